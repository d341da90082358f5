//! Row ↔ record mapping (the column lists are SQLite's: `crate::rows`).

use crate::StoreError;
use harness_core::*;
use tokio_postgres::Row;

pub(crate) use crate::rows::{
    APPROVAL_COLS, ARTIFACT_COLS, EVENT_COLS, REQUEST_COLS, STEP_COLS, WORKER_COLS,
};

fn parse_enum<T>(s: String, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(&s).ok_or_else(|| StoreError::Corrupt(format!("unknown value `{s}`")))
}

fn json(s: String) -> Result<serde_json::Value, StoreError> {
    Ok(serde_json::from_str(&s)?)
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

fn u32_of(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is out of range")))
}

pub(crate) fn request(r: &Row) -> Result<Request, StoreError> {
    Ok(Request {
        id: RequestId::from_trusted(r.try_get(0)?),
        session_id: SessionId::from_trusted(r.try_get(1)?),
        agent: r.try_get(2)?,
        parent_id: r
            .try_get::<_, Option<String>>(3)?
            .map(RequestId::from_trusted),
        status: parse_enum(r.try_get(4)?, RequestStatus::parse)?,
        attempt: u32_of(r.try_get(5)?, "attempt")?,
        current_agent: r.try_get(6)?,
        input: r.try_get(7)?,
        output: r.try_get(8)?,
        error: r.try_get(9)?,
        trace_id: r.try_get(10)?,
        created_at: Timestamp(r.try_get(11)?),
        started_at: ts(r.try_get(12)?),
        last_activity_at: Timestamp(r.try_get(13)?),
        finished_at: ts(r.try_get(14)?),
        steps: u32_of(r.try_get(15)?, "steps")?,
        worker_id: r
            .try_get::<_, Option<String>>(16)?
            .map(WorkerId::from_trusted),
        retry_of: r
            .try_get::<_, Option<String>>(17)?
            .map(RequestId::from_trusted),
        priority: r.try_get(18)?,
        traceparent: r.try_get(19)?,
    })
}

pub(crate) fn approval(r: &Row) -> Result<Approval, StoreError> {
    Ok(Approval {
        id: ApprovalId::from_trusted(r.try_get(0)?),
        request_id: RequestId::from_trusted(r.try_get(1)?),
        session_id: SessionId::from_trusted(r.try_get(2)?),
        agent: r.try_get(3)?,
        step_idx: u32_of(r.try_get(4)?, "step index")?,
        call_id: CallId::from_trusted(r.try_get(5)?),
        tool: r.try_get(6)?,
        arguments: json(r.try_get(7)?)?,
        status: parse_enum(r.try_get(8)?, ApprovalStatus::parse)?,
        decided_by: r.try_get(9)?,
        message: r.try_get(10)?,
        edited_arguments: r.try_get::<_, Option<String>>(11)?.map(json).transpose()?,
        created_at: Timestamp(r.try_get(12)?),
        decided_at: ts(r.try_get(13)?),
        expires_at: Timestamp(r.try_get(14)?),
        reason: r.try_get(15)?,
        decided_by_kind: r
            .try_get::<_, Option<String>>(16)?
            .map(|s| parse_enum(s, ActorKind::parse))
            .transpose()?,
    })
}

pub(crate) fn event(r: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        seq: r.try_get(0)?,
        at: Timestamp(r.try_get(1)?),
        kind: parse_enum(r.try_get(2)?, EventKind::parse)?,
        request_id: r
            .try_get::<_, Option<String>>(3)?
            .map(RequestId::from_trusted),
        session_id: r
            .try_get::<_, Option<String>>(4)?
            .map(SessionId::from_trusted),
        payload: json(r.try_get(5)?)?,
    })
}

pub(crate) fn step(r: &Row) -> Result<Step, StoreError> {
    let body: String = r.try_get(4)?;
    Ok(Step {
        request_id: RequestId::from_trusted(r.try_get(0)?),
        idx: u32_of(r.try_get(1)?, "step index")?,
        agent: r.try_get(2)?,
        status: parse_enum(r.try_get(3)?, StepStatus::parse)?,
        body: serde_json::from_str(&body)?,
        started_at: Timestamp(r.try_get(5)?),
        finished_at: ts(r.try_get(6)?),
    })
}

pub(crate) fn artifact(r: &Row) -> Result<Artifact, StoreError> {
    Ok(Artifact {
        id: ArtifactId::from_trusted(r.try_get(0)?),
        request_id: RequestId::from_trusted(r.try_get(1)?),
        session_id: SessionId::from_trusted(r.try_get(2)?),
        name: r.try_get(3)?,
        version: u32_of(r.try_get(4)?, "artifact version")?,
        media_type: r.try_get(5)?,
        size: r.try_get::<_, i64>(6)? as u64,
        sha256: r.try_get(7)?,
        created_at: Timestamp(r.try_get(8)?),
    })
}

pub(crate) fn worker(r: &Row) -> Result<Worker, StoreError> {
    Ok(Worker {
        id: WorkerId::from_trusted(r.try_get(0)?),
        pid: u32_of(r.try_get(1)?, "pid")?,
        host: r.try_get(2)?,
        started_at: Timestamp(r.try_get(3)?),
        heartbeat_at: Timestamp(r.try_get(4)?),
        stopped_at: ts(r.try_get(5)?),
        version: r.try_get(6)?,
    })
}

/// Maps every row.
pub(crate) fn all<T>(
    rows: Vec<Row>,
    f: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}
