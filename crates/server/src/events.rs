//! `GET /v1/events`: committed events as Server-Sent Events.
//!
//! Each event's `id` is its seq. The stream starts after `Last-Event-ID` (a
//! reconnecting client's) or else after `?from=SEQ` (default 0: every event), and
//! reads the store by cursor, so a reconnect — to this server or to one started
//! since — continues with no gap and no duplicate. `?request=` is that request's
//! own events, `?session=` a session's, `?tree=` a request's and those of every
//! request delegated under it; given together they all narrow. A comment line every
//! 15 s keeps proxies from closing an idle stream. Streams share the harness's one
//! reader of the store (`harness_engine::EventStream`). A slow client is never
//! ended for being slow: once it falls more than the shared reader's window behind,
//! it is detached and reads the store by its cursor at its own pace, holding one
//! batch, then rejoins: it costs store reads, never memory. A store error ends the
//! stream with an `error` event naming `resume_from`.

use crate::{ApiError, AppState, Principal, Role};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use harness_core::{EventFilter, RequestId, SessionId};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// How often an idle stream sends a comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Start after this event seq (default 0: every event); `Last-Event-ID` wins.
    #[param(minimum = 0)]
    from: Option<i64>,
    /// Only events of this request.
    request: Option<String>,
    /// Only events of this session.
    session: Option<String>,
    tree: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    description = "Role: viewer. Committed events as Server-Sent Events: each event's `id` \
        is its seq, its `event` its kind, its `data` the event as JSON. The stream starts \
        after `Last-Event-ID` (a reconnecting client's), else after `from`; a comment \
        every 15 s keeps it open. If the store fails, an `error` event \
        (`{code, message, resume_from}`) ends it.",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The seq of the last event received"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad `from`, `Last-Event-ID` or id", body = crate::ErrorBody),
    ))]
pub(crate) async fn events(
    p: Principal,
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    p.require(Role::Viewer)?;
    let Query(q) = q?;
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID must be an event seq (a number)")
                })?,
        ),
    };
    let from = match (last, q.from) {
        (Some(l), _) => l,
        (None, Some(f)) if f < 0 => return Err(ApiError::invalid("from must be 0 or more")),
        (None, f) => f.unwrap_or(0),
    };
    let filter = EventFilter {
        request_id: q.request.as_deref().map(RequestId::parse).transpose()?,
        session_id: q.session.as_deref().map(SessionId::parse).transpose()?,
        tree: q.tree.as_deref().map(RequestId::parse).transpose()?,
    };
    if let Some(root) = &filter.tree {
        // A tree that does not exist is a mistake (404), not an empty stream.
        s.harness.get_request(root).await?;
    }
    let sub = s.harness.subscribe(from, filter);
    let shutdown = s.shutdown.clone();
    // Lives in the stream: dropped (the gauge goes down) when the client goes away
    // or the stream ends.
    let subscriber = crate::metrics::Subscriber::new(&s.sse_subscribers);
    let stream = futures_util::stream::unfold((sub, false), move |(mut sub, done)| {
        let mut shutdown = shutdown.clone();
        let _counted = &subscriber;
        async move {
            if done || *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                next = sub.next() => Some(match next {
                    Ok(e) => {
                        let data = serde_json::to_string(&e).unwrap_or_default();
                        (Ok(SseEvent::default()
                            .id(e.seq.to_string())
                            .event(e.kind.as_str())
                            .data(data)), (sub, false))
                    }
                    Err(err) => {
                        // The store failed: say where to resume, then end.
                        let cursor = sub.cursor();
                        let body = serde_json::json!({
                            "code": "unavailable",
                            "message": err.to_string(),
                            "resume_from": cursor,
                        });
                        (Ok(SseEvent::default().event("error").data(body.to_string())), (sub, true))
                    }
                }),
                _ = shutdown.wait_for(|v| *v) => None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}
