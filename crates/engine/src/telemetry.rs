//! OpenTelemetry: the runtime's `tracing` spans carry each request's W3C trace id.
//!
//! A run of a request is a `request` span; each iteration of its loop (one decision
//! of [`harness_core::journal::next_action`] and the commit that records it) a `step`
//! span inside it; a model turn a `model.call` and a tool call a `tool.call` span
//! inside the step; a delegated child's `request` span is inside its parent's
//! `tool.call`. Whoever installs a `tracing-opentelemetry` layer (`serve`, with an
//! OTLP endpoint; tests, with the SDK's in-memory exporter) gets them as
//! OpenTelemetry spans; without one, this module does nothing.
//!
//! The trace id of every span is the request's stored `trace_id`: a root request's
//! span is given a remote parent in that trace ([`join_trace`]), so its children
//! (and a delegated child's spans) inherit it, and a run resumed after an approval
//! or a restart joins the same trace. For a request admitted with a `traceparent`,
//! that remote parent is the caller's span: the span id and `trace-flags` of the
//! header kept with the request (`Request::traceparent`), the same for every run of
//! the request. A caller that did not sample its span (flags `00`) gets a parent
//! that is not sampled, so a sampler that follows the parent (the SDK's default)
//! records none of the request's spans.
//!
//! A request without a `traceparent` (admitted without one or with an invalid one,
//! or a retry, which starts a new trace) has no caller span: its remote parent is a
//! sampled stand-in whose span id is derived from the trace id, which a backend
//! shows as a parent it never received. Delegated children keep no `traceparent`
//! either: their `request` span is inside the parent's `tool.call` span, in the
//! root's run.

use harness_core::Request;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` (the root request `req`'s, not yet entered) a child of its remote
/// parent ([`remote_parent`]). An invalid trace id leaves the span alone (a new trace).
pub(crate) fn join_trace(span: &tracing::Span, req: &Request) {
    let Some(cx) = remote_parent(&req.trace_id, req.traceparent.as_deref()) else {
        return;
    };
    // Without an OpenTelemetry layer (nothing exported) this is refused: nothing to do.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(cx));
}

/// The remote parent of a root request's span in trace `trace_id`: the caller's
/// span that `traceparent` (the request's kept header) names, with its flags; or,
/// when there is none (or it is invalid or of another trace), a sampled stand-in
/// with the trace id's first 8 bytes as span id (its last 8 when those are zero).
/// None for an invalid trace id.
pub fn remote_parent(trace_id: &str, traceparent: Option<&str>) -> Option<SpanContext> {
    let trace = TraceId::from_hex(trace_id)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let caller = traceparent
        .and_then(|h| harness_providers::trace::parse_traceparent(h).ok())
        .filter(|t| t.trace_id == trace_id)
        .and_then(|t| Some((SpanId::from_hex(&t.parent_id).ok()?, t.flags)));
    let (span, flags) = match caller {
        Some((span, flags)) => (span, TraceFlags::new(flags)),
        None => (stand_in(trace), TraceFlags::SAMPLED),
    };
    Some(SpanContext::new(
        trace,
        span,
        flags,
        true,
        TraceState::default(),
    ))
}

/// The stand-in parent span id of a trace: its first 8 bytes, or its last 8.
fn stand_in(trace: TraceId) -> SpanId {
    let bytes = trace.to_bytes();
    let (first, last) = bytes.split_at(8);
    let half = if first.iter().any(|b| *b != 0) {
        first
    } else {
        last
    };
    SpanId::from_bytes(half.try_into().expect("8 bytes"))
}

/// The `traceparent` naming `span`, with its sampled flag, when an OpenTelemetry
/// layer records it: what is sent on from inside it (a span the caller chose not to
/// sample passes that choice on).
pub(crate) fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let otel = cx.span();
    header_of(otel.span_context())
}

/// The W3C `traceparent` (version 00) of a valid span context.
fn header_of(sc: &SpanContext) -> Option<String> {
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn the_header_sent_on_keeps_the_spans_sampled_flag() {
        let span = |flags| {
            SpanContext::new(
                TraceId::from_hex(TRACE).unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                flags,
                false,
                TraceState::default(),
            )
        };
        assert_eq!(
            header_of(&span(TraceFlags::SAMPLED)).unwrap(),
            format!("00-{TRACE}-00f067aa0ba902b7-01")
        );
        assert_eq!(
            header_of(&span(TraceFlags::default())).unwrap(),
            format!("00-{TRACE}-00f067aa0ba902b7-00"),
            "a span not sampled says so downstream"
        );
        assert_eq!(header_of(&SpanContext::empty_context()), None);
    }

    #[test]
    fn the_remote_parent_is_the_callers_span_when_kept() {
        let header = format!("00-{TRACE}-00f067aa0ba902b7-01");
        let p = remote_parent(TRACE, Some(&header)).unwrap();
        assert_eq!(p.trace_id().to_string(), TRACE);
        assert_eq!(p.span_id().to_string(), "00f067aa0ba902b7");
        assert!(p.is_sampled() && p.is_remote());
        // Not sampled by the caller: nor is the parent.
        let header = format!("00-{TRACE}-00f067aa0ba902b7-00");
        let p = remote_parent(TRACE, Some(&header)).unwrap();
        assert_eq!(p.span_id().to_string(), "00f067aa0ba902b7");
        assert!(!p.is_sampled());
    }

    #[test]
    fn without_a_kept_header_the_parent_is_the_sampled_stand_in() {
        let other = "0af7651916cd43dd8448eb211c80319c";
        for kept in [
            None,
            Some("garbage".to_string()),
            // Of another trace: not this request's caller.
            Some(format!("00-{other}-00f067aa0ba902b7-01")),
        ] {
            let p = remote_parent(TRACE, kept.as_deref()).unwrap();
            assert_eq!(p.span_id().to_string(), &TRACE[..16], "{kept:?}");
            assert!(p.is_sampled() && p.is_remote());
        }
        let low = format!("{}{}", "0".repeat(16), &TRACE[16..]);
        assert_eq!(
            remote_parent(&low, None).unwrap().span_id().to_string(),
            &TRACE[16..]
        );
        assert!(remote_parent(&"0".repeat(32), None).is_none());
        assert!(remote_parent("t", None).is_none());
    }
}
