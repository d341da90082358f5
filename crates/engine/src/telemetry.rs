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
//! or a restart joins the same trace. The request row does not keep the caller's
//! span id, so that remote parent's span id is a stand-in derived from the trace
//! id (the same for every run of every request of the trace); a backend shows the
//! request spans under a parent it never received.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` (a root request's, not yet entered) a child of a remote span of
/// trace `trace_id`. An invalid trace id leaves the span alone (a new trace).
pub(crate) fn join_trace(span: &tracing::Span, trace_id: &str) {
    let Some(cx) = remote_parent(trace_id) else {
        return;
    };
    // Without an OpenTelemetry layer (nothing exported) this is refused: nothing to do.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(cx));
}

/// The remote parent of a root request's span: trace `trace_id`, sampled, with the
/// stand-in span id (the trace id's first 8 bytes, or its last 8 when those are zero).
pub fn remote_parent(trace_id: &str) -> Option<SpanContext> {
    let trace = TraceId::from_hex(trace_id)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let bytes = trace.to_bytes();
    let (first, last) = bytes.split_at(8);
    let half = if first.iter().any(|b| *b != 0) {
        first
    } else {
        last
    };
    let span = SpanId::from_bytes(half.try_into().expect("8 bytes"));
    Some(SpanContext::new(
        trace,
        span,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

/// The OpenTelemetry span id of `span` (16 hex), when a layer records it: what a
/// `traceparent` sent on from inside it names.
pub(crate) fn span_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| sc.span_id().to_string())
}
