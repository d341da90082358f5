//! OpenTelemetry spans of the demo flow, recorded by the SDK's in-memory exporter:
//! a root request that delegates to a child, pauses for an approval, is approved and
//! finishes. Every span is in the request's trace (the incoming traceparent's),
//! under the caller's span it names; request > step > model.call / tool.call, a
//! child's request inside the parent's `delegate` tool.call; a resumed run joins the
//! same trace under the same parent. Without a traceparent the parent is the
//! stand-in; a caller that did not sample gets no spans.

mod common;

use common::Backend;
use harness_core::*;
use harness_engine::{Admit, WorkerOptions, run_until_settled};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;

/// One exporter for the test binary: the subscriber is global (runs spawn tasks on
/// other threads); each test reads only the spans of its own trace.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        exporter
    })
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

fn parent<'a>(spans: &'a [SpanData], s: &SpanData) -> Option<&'a SpanData> {
    spans
        .iter()
        .find(|p| p.span_context.span_id() == s.parent_span_id)
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The caller's span, named by the traceparent the demo request is admitted with.
const CALLER: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_flow_is_one_trace_of_nested_spans() {
    let exporter = exporter();
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let (h, _keep) = common::open(dir.path(), Backend::Sqlite).unwrap();
    let fast = || WorkerOptions {
        poll: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let req = h
        .admit(Admit {
            agent: "assistant".into(),
            input: "ship the release notes".into(),
            traceparent: Some(format!("00-{TRACE}-{CALLER}-01")),
            ..Default::default()
        })
        .await
        .unwrap()
        .request;
    assert_eq!(req.trace_id, TRACE);
    assert_eq!(
        req.traceparent.as_deref(),
        Some(format!("00-{TRACE}-{CALLER}-01").as_str())
    );
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval, "{r:?}");
    let pending = h
        .list_approvals(ApprovalFilter {
            request_id: Some(req.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    h.resolve_approval(ResolveApproval {
        session_id: req.session_id.clone(),
        request_id: req.id.clone(),
        approval_id: pending[0].id.clone(),
        decision: Decision::Approved,
        message: None,
        decided_by: Actor::new(ActorKind::Cli, "alice"),
        edited_arguments: None,
    })
    .await
    .unwrap();
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
    let child = h
        .list_requests(RequestFilter {
            parent_id: Some(req.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);

    let spans: Vec<SpanData> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id().to_string() == TRACE)
        .collect();
    let names = |name: &'static str| spans.iter().filter(move |s| s.name == name);

    // The root ran twice (to the pause, then after the approval): two request spans,
    // both children of the caller's span (remote), not of the stand-in.
    let caller = SpanId::from_hex(CALLER).unwrap();
    let stand_in = harness_engine::telemetry::remote_parent(TRACE, None).unwrap();
    assert_ne!(stand_in.span_id(), caller);
    let mut roots: Vec<&SpanData> = names("request")
        .filter(|s| attr(s, "request_id").as_deref() == Some(req.id.as_str()))
        .collect();
    roots.sort_by_key(|s| s.start_time);
    assert_eq!(roots.len(), 2, "{spans:#?}");
    for (s, outcome) in roots.iter().zip(["paused", "completed"]) {
        assert_eq!(s.parent_span_id, caller);
        assert!(s.parent_span_is_remote);
        assert_eq!(attr(s, "outcome").as_deref(), Some(outcome));
        assert_eq!(
            attr(s, "session_id").as_deref(),
            Some(req.session_id.as_str())
        );
        assert_eq!(attr(s, "agent").as_deref(), Some("assistant"));
        assert_eq!(attr(s, "root_id").as_deref(), Some(req.id.as_str()));
        assert_eq!(attr(s, "trace_id").as_deref(), Some(TRACE));
    }

    // Every step is inside a request; model and tool calls inside a step.
    assert!(names("step").count() >= 4, "{spans:#?}");
    for s in names("step") {
        assert_eq!(
            parent(&spans, s).map(|p| &*p.name),
            Some("request"),
            "{s:#?}"
        );
        assert!(attr(s, "step.index").is_some() && attr(s, "step.action").is_some());
    }
    assert!(names("model.call").count() >= 3);
    for s in names("model.call").chain(names("tool.call")) {
        assert_eq!(parent(&spans, s).map(|p| &*p.name), Some("step"), "{s:#?}");
    }
    for s in names("model.call") {
        assert_eq!(attr(s, "gen_ai.operation.name").as_deref(), Some("chat"));
        assert!(attr(s, "gen_ai.request.model").is_some(), "{s:#?}");
        assert!(
            matches!(attr(s, "outcome").as_deref(), Some("text" | "tool_calls")),
            "{s:#?}"
        );
    }

    // The delegation: the child's request span is inside the root's `delegate` call.
    let child_span = names("request")
        .find(|s| attr(s, "request_id").as_deref() == Some(child.id.as_str()))
        .expect("the child's request span");
    let call = parent(&spans, child_span).expect("the delegate call's span");
    assert_eq!(&*call.name, "tool.call");
    assert_eq!(attr(call, "gen_ai.tool.name").as_deref(), Some("delegate"));
    assert_eq!(attr(call, "outcome").as_deref(), Some("ok"));
    assert_eq!(
        attr(child_span, "parent_id").as_deref(),
        Some(req.id.as_str())
    );
    assert_eq!(
        attr(child_span, "root_id").as_deref(),
        Some(req.id.as_str())
    );
    assert_eq!(attr(child_span, "outcome").as_deref(), Some("completed"));
    let in_root = |s: &SpanData| {
        let mut at = Some(s);
        while let Some(p) = at.and_then(|s| parent(&spans, s)) {
            if roots.iter().any(|r| r.span_context == p.span_context) {
                return true;
            }
            at = Some(p);
        }
        false
    };
    assert!(in_root(child_span));

    // The call that needs approval: its first run pauses, the run after the
    // approval runs it (same call id, in the second root span).
    let mails: Vec<&SpanData> = names("tool.call")
        .filter(|s| attr(s, "tool").as_deref() == Some("send_mail"))
        .collect();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert_eq!(attr(mails[0], "call_id"), attr(mails[1], "call_id"));
    let outcomes: Vec<_> = mails.iter().map(|s| attr(s, "outcome")).collect();
    assert!(
        outcomes.contains(&Some("awaiting_approval".into())),
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&Some("ok".into())), "{outcomes:?}");
    for s in &mails {
        assert_eq!(
            s.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "approval_required")
                .map(|kv| kv.value.clone()),
            Some(true.into())
        );
    }
    // Nothing of this run is outside the trace: every span's parent is in it, or
    // is the caller's span.
    for s in &spans {
        assert!(
            parent(&spans, s).is_some() || s.parent_span_id == caller,
            "{s:#?}"
        );
        assert_ne!(s.span_context.span_id(), SpanId::INVALID);
    }
}

/// Admits `traceparent`'s request for the demo agent and runs it to its pause.
async fn admit_and_pause(h: &harness_engine::Harness, traceparent: Option<String>) -> Request {
    let req = h
        .admit(Admit {
            agent: "assistant".into(),
            input: "ship the release notes".into(),
            traceparent,
            ..Default::default()
        })
        .await
        .unwrap()
        .request;
    let fast = WorkerOptions {
        poll: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let r = run_until_settled(h, &req.id, fast).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval, "{r:?}");
    req
}

fn spans_of(trace: &str) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_traceparent_the_request_span_is_under_the_stand_in() {
    exporter();
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let (h, _keep) = common::open(dir.path(), Backend::Sqlite).unwrap();
    let req = admit_and_pause(&h, None).await;
    assert_eq!(req.traceparent, None);
    let spans = spans_of(&req.trace_id);
    let root = spans
        .iter()
        .find(|s| s.name == "request" && attr(s, "request_id").as_deref() == Some(req.id.as_str()))
        .expect("the request span");
    let stand_in = harness_engine::telemetry::remote_parent(&req.trace_id, None).unwrap();
    assert_eq!(root.parent_span_id, stand_in.span_id());
    assert!(root.parent_span_is_remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_did_not_sample_gets_no_spans() {
    exporter();
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let (h, _keep) = common::open(dir.path(), Backend::Sqlite).unwrap();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let header = format!("00-{trace}-b7ad6b7169203331-00");
    let req = admit_and_pause(&h, Some(header.clone())).await;
    assert_eq!(req.trace_id, trace);
    assert_eq!(req.traceparent, Some(header));
    // The run happened (a step is committed) but the SDK's parent-based sampler
    // followed the caller: nothing of the trace was recorded.
    assert!(h.get_request(&req.id).await.unwrap().steps > 0);
    assert!(spans_of(trace).is_empty(), "{:#?}", spans_of(trace));
}
