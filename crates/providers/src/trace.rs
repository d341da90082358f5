//! W3C trace-context (<https://www.w3.org/TR/trace-context/>): trace ids, span ids
//! and the `traceparent` header.
//!
//! A request's trace id is the `trace-id` of the `traceparent` it was admitted
//! with, or 16 random bytes from the OS when it had none (or an invalid one: a
//! receiver of an invalid `traceparent` ignores it and starts a new trace, as the
//! specification says). Command tools get `TRACEPARENT` in their environment and HTTP
//! model calls send a `traceparent` header, each with the request's trace id and a
//! new random span id.

/// A parsed `traceparent` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex characters, not all zero.
    pub trace_id: String,
    /// The caller's span (`parent-id`): 16 lowercase hex characters, not all zero.
    pub parent_id: String,
    /// `trace-flags` (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Its version 00 `traceparent` value (`00-<trace-id>-<parent-id>-<flags>`): what
    /// a later version's header is read as.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }

    /// Whether the caller sampled its span (`trace-flags` bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Parses a `traceparent` header value as trace-context level 1 says a receiver
/// does: `VERSION-TRACEID-PARENTID-FLAGS`, lowercase hex only; version `ff` is
/// invalid, version `00` is exactly 55 characters, and a later version may carry
/// more fields after a `-` (only the first four are read). The error says what is
/// wrong.
pub fn parse_traceparent(value: &str) -> Result<TraceParent, String> {
    let value = value.trim_matches([' ', '\t']);
    let version = value
        .get(0..2)
        .filter(|v| is_lower_hex(v))
        .ok_or("the version is not 2 lowercase hex digits")?;
    if version == "ff" {
        return Err("version ff is invalid".into());
    }
    if version == "00" && value.len() != 55 {
        return Err(format!(
            "a version 00 traceparent is 55 characters (00-<32 hex>-<16 hex>-<2 hex>), not {}",
            value.len()
        ));
    }
    if value.len() < 55 || (value.len() > 55 && value.as_bytes()[55] != b'-') {
        return Err(
            "expected <2 hex>-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>".to_string(),
        );
    }
    let parts: Vec<&str> = value[..55].split('-').collect();
    let [_, trace_id, parent_id, flags] = parts[..] else {
        return Err(
            "expected <2 hex>-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>".to_string(),
        );
    };
    for (name, part, len) in [
        ("trace-id", trace_id, 32),
        ("parent-id", parent_id, 16),
        ("trace-flags", flags, 2),
    ] {
        if part.len() != len || !is_lower_hex(part) {
            return Err(format!("the {name} is not {len} lowercase hex digits"));
        }
    }
    if trace_id.bytes().all(|b| b == b'0') {
        return Err("the trace-id is all zeros".into());
    }
    if parent_id.bytes().all(|b| b == b'0') {
        return Err("the parent-id is all zeros".into());
    }
    Ok(TraceParent {
        trace_id: trace_id.to_string(),
        parent_id: parent_id.to_string(),
        flags: u8::from_str_radix(flags, 16).expect("checked hex"),
    })
}

/// A new trace id: 16 random bytes (never all zero) as 32 lowercase hex characters.
pub fn new_trace_id() -> String {
    random_hex::<16>()
}

/// A new span id: 8 random bytes (never all zero) as 16 lowercase hex characters.
pub fn new_span_id() -> String {
    random_hex::<8>()
}

/// The `traceparent` value of a new span of trace `trace_id` (version 00, sampled).
pub fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{}-01", new_span_id())
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    loop {
        if getrandom::fill(&mut bytes).is_err() {
            // No OS randomness (never on the platforms we run on): still random enough
            // to tell traces apart.
            bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        if bytes.iter().any(|&b| b != 0) {
            return bytes.iter().map(|b| format!("{b:02x}")).collect();
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn parses_a_valid_traceparent() {
        let t = parse_traceparent(&format!("00-{TRACE}-00f067aa0ba902b7-01")).unwrap();
        assert_eq!(t.trace_id, TRACE);
        assert_eq!(t.parent_id, "00f067aa0ba902b7");
        assert_eq!(t.flags, 1);
        // A later version may add fields after a dash.
        let t = parse_traceparent(&format!("01-{TRACE}-00f067aa0ba902b7-00-whatever")).unwrap();
        assert_eq!((t.trace_id.as_str(), t.flags), (TRACE, 0));
        assert!(!t.sampled());
        assert_eq!(t.header(), format!("00-{TRACE}-00f067aa0ba902b7-00"));
    }

    #[test]
    fn refuses_invalid_values() {
        let bad = [
            // all-zero ids
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            // bad versions
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("0g-{TRACE}-00f067aa0ba902b7-01"),
            // wrong lengths
            format!("00-{}-00f067aa0ba902b7-01", &TRACE[..31]),
            format!("00-{TRACE}0-00f067aa0ba902b7-01"),
            format!("00-{TRACE}-00f067aa0ba902b-01"),
            format!("00-{TRACE}-00f067aa0ba902b7-1"),
            format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            format!("01-{TRACE}-00f067aa0ba902b7-01x"),
            String::new(),
            // uppercase hex
            format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            format!("00-{TRACE}-00F067AA0BA902B7-01"),
            // wrong separators
            format!("00_{TRACE}_00f067aa0ba902b7_01"),
        ];
        for value in bad {
            assert!(parse_traceparent(&value).is_err(), "{value:?} was accepted");
        }
        assert_eq!(
            parse_traceparent(&format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32))),
            Err("the trace-id is all zeros".to_string())
        );
    }

    #[test]
    fn new_ids_are_random_lowercase_hex() {
        let (a, b) = (new_trace_id(), new_trace_id());
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(is_lower_hex(id) && id.bytes().any(|c| c != b'0'), "{id}");
        }
        let header = traceparent(&a);
        let t = parse_traceparent(&header).unwrap();
        assert_eq!((t.trace_id, t.flags), (a, 1));
        assert_eq!(new_span_id().len(), 16);
    }
}
