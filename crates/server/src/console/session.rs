//! The console's browser session: the token in an HttpOnly, SameSite=Strict cookie
//! (hex-encoded, so any token is a valid cookie value), and the same-origin check
//! every state-changing request authenticated by that cookie must pass.

use axum::http::{HeaderMap, HeaderValue, Method, header};

/// The cookie holding the console's token.
pub const COOKIE: &str = "agent_harness_token";

/// The token the session cookie holds, if the request carries one.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| hex::decode(value.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// `Set-Cookie` for a login with `token`: sent back on same-site requests only,
/// never readable by scripts.
pub fn set_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        hex::encode(token.as_bytes())
    ))
    .expect("hex is a valid header value")
}

/// `Set-Cookie` that clears the session (logout).
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("agent_harness_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether a request may change state: methods that only read always may; others
/// are refused when the browser says they come from another site (`Sec-Fetch-Site`
/// other than `same-origin` or `none`, or an `Origin` whose host is not the one
/// addressed). A client that sends neither (curl, scripts) is not a browser
/// carrying someone else's cookie, and passes.
pub fn same_origin(method: &Method, headers: &HeaderMap) -> Result<(), String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return Err(format!(
                "refused a cross-site request (Sec-Fetch-Site: {site}): the console's forms must be sent from its own pages"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(format!(
                "refused a cross-site request (Origin {origin} is not this server, {host}): the console's forms must be sent from its own pages"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_round_trips_any_token() {
        let token = "a b;c=d\"é";
        let set = set_cookie(token);
        let s = set.to_str().unwrap();
        assert!(
            s.contains("HttpOnly") && s.contains("SameSite=Strict"),
            "{s}"
        );
        let value = s.split(';').next().unwrap();
        let h = headers(&[("cookie", &format!("other=1; {value}; x=y"))]);
        assert_eq!(cookie_token(&h).as_deref(), Some(token));
        assert_eq!(cookie_token(&headers(&[("cookie", "other=1")])), None);
        assert_eq!(
            cookie_token(&headers(&[("cookie", "agent_harness_token=zz")])),
            None
        );
    }

    #[test]
    fn cross_site_writes_are_refused_and_reads_pass() {
        let post = Method::POST;
        let ok = [
            headers(&[]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            headers(&[("sec-fetch-site", "same-origin")]),
        ];
        for h in ok {
            assert!(same_origin(&post, &h).is_ok(), "{h:?}");
        }
        let refused = [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
        ];
        for h in refused {
            let e = same_origin(&post, &h).unwrap_err();
            assert!(e.contains("cross-site"), "{e}");
            assert!(same_origin(&Method::GET, &h).is_ok());
        }
    }
}
