//! Row ↔ record mapping. Column lists live beside the functions that read them.

use harness_core::*;
use rusqlite::Row;

pub(crate) const REQUEST_COLS: &str = "id, session_id, agent, parent_id, status, attempt, \
    current_agent, input, output, error, trace_id, created_at, started_at, last_activity_at, \
    finished_at, steps, worker_id, retry_of, priority, traceparent";

fn parse_enum<T>(s: String, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown value `{s}`").into(),
        )
    })
}

fn json(s: String) -> rusqlite::Result<serde_json::Value> {
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

pub(crate) fn request(r: &Row<'_>) -> rusqlite::Result<Request> {
    Ok(Request {
        id: RequestId::from_trusted(r.get(0)?),
        session_id: SessionId::from_trusted(r.get(1)?),
        agent: r.get(2)?,
        parent_id: r.get::<_, Option<String>>(3)?.map(RequestId::from_trusted),
        status: parse_enum(r.get(4)?, RequestStatus::parse)?,
        attempt: r.get(5)?,
        current_agent: r.get(6)?,
        input: r.get(7)?,
        output: r.get(8)?,
        error: r.get(9)?,
        trace_id: r.get(10)?,
        created_at: Timestamp(r.get(11)?),
        started_at: ts(r.get(12)?),
        last_activity_at: Timestamp(r.get(13)?),
        finished_at: ts(r.get(14)?),
        steps: r.get(15)?,
        worker_id: r.get::<_, Option<String>>(16)?.map(WorkerId::from_trusted),
        retry_of: r.get::<_, Option<String>>(17)?.map(RequestId::from_trusted),
        priority: r.get(18)?,
        traceparent: r.get(19)?,
    })
}

pub(crate) const APPROVAL_COLS: &str = "id, request_id, session_id, agent, step_idx, call_id, \
    tool, arguments, status, decided_by, message, edited_arguments, created_at, decided_at, expires_at, reason, decided_by_kind";

pub(crate) fn approval(r: &Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        id: ApprovalId::from_trusted(r.get(0)?),
        request_id: RequestId::from_trusted(r.get(1)?),
        session_id: SessionId::from_trusted(r.get(2)?),
        agent: r.get(3)?,
        step_idx: r.get(4)?,
        call_id: CallId::from_trusted(r.get(5)?),
        tool: r.get(6)?,
        arguments: json(r.get(7)?)?,
        status: parse_enum(r.get(8)?, ApprovalStatus::parse)?,
        decided_by: r.get(9)?,
        message: r.get(10)?,
        edited_arguments: r.get::<_, Option<String>>(11)?.map(json).transpose()?,
        created_at: Timestamp(r.get(12)?),
        decided_at: ts(r.get(13)?),
        expires_at: Timestamp(r.get(14)?),
        reason: r.get(15)?,
        decided_by_kind: r
            .get::<_, Option<String>>(16)?
            .map(|s| parse_enum(s, ActorKind::parse))
            .transpose()?,
    })
}

pub(crate) const EVENT_COLS: &str = "seq, at, kind, request_id, session_id, payload";

pub(crate) fn event(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        at: Timestamp(r.get(1)?),
        kind: parse_enum(r.get(2)?, EventKind::parse)?,
        request_id: r.get::<_, Option<String>>(3)?.map(RequestId::from_trusted),
        session_id: r.get::<_, Option<String>>(4)?.map(SessionId::from_trusted),
        payload: json(r.get(5)?)?,
    })
}

pub(crate) const STEP_COLS: &str = "request_id, idx, agent, status, body, started_at, finished_at";

pub(crate) fn step(r: &Row<'_>) -> rusqlite::Result<Step> {
    let body: String = r.get(4)?;
    Ok(Step {
        request_id: RequestId::from_trusted(r.get(0)?),
        idx: r.get(1)?,
        agent: r.get(2)?,
        status: parse_enum(r.get(3)?, StepStatus::parse)?,
        body: serde_json::from_str(&body).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        started_at: Timestamp(r.get(5)?),
        finished_at: ts(r.get(6)?),
    })
}

pub(crate) const ARTIFACT_COLS: &str =
    "id, request_id, session_id, name, version, media_type, size, sha256, created_at";

pub(crate) fn artifact(r: &Row<'_>) -> rusqlite::Result<Artifact> {
    Ok(Artifact {
        id: ArtifactId::from_trusted(r.get(0)?),
        request_id: RequestId::from_trusted(r.get(1)?),
        session_id: SessionId::from_trusted(r.get(2)?),
        name: r.get(3)?,
        version: r.get(4)?,
        media_type: r.get(5)?,
        size: r.get::<_, i64>(6)? as u64,
        sha256: r.get(7)?,
        created_at: Timestamp(r.get(8)?),
    })
}

pub(crate) const WORKER_COLS: &str = "id, pid, host, started_at, heartbeat_at, stopped_at, version";

pub(crate) fn worker(r: &Row<'_>) -> rusqlite::Result<Worker> {
    Ok(Worker {
        id: WorkerId::from_trusted(r.get(0)?),
        pid: r.get(1)?,
        host: r.get(2)?,
        started_at: Timestamp(r.get(3)?),
        heartbeat_at: Timestamp(r.get(4)?),
        stopped_at: ts(r.get(5)?),
        version: r.get(6)?,
    })
}
