//! Token usage of model turns, summed for the operator views.
//!
//! A turn's usage is part of its step body (`info.usage`, see
//! `harness_core::TurnInfo`), so nothing is written for it: the sums read it with
//! `json_extract` (no schema change, and turns recorded before providers reported
//! usage simply have none). A request's steps are read by primary key and a
//! session's requests by index, so the sums cost what reading those steps costs.

use crate::pg::PgStore;
use crate::{Backend, Store, StoreError};
use harness_core::{RequestId, SessionId, UsageTotals};
use rusqlite::Connection;
use std::collections::HashMap;

/// The usage of one step, NULL for a tool call or a turn that reported none.
const INPUT: &str = "json_extract(s.body, '$.info.usage.input_tokens')";
const OUTPUT: &str = "json_extract(s.body, '$.info.usage.output_tokens')";

/// Requests per query (SQLite bounds the parameters of one statement).
const BATCH: usize = 500;

impl Store {
    /// Token totals of each of `requests`: its own model turns (a delegated child's
    /// are its own). Requests with no turn that reported usage are left out.
    pub async fn request_usage(
        &self,
        requests: Vec<RequestId>,
    ) -> Result<HashMap<RequestId, UsageTotals>, StoreError> {
        if requests.is_empty() {
            return Ok(HashMap::new());
        }
        match &self.backend {
            Backend::Sqlite(b) => b.read(move |c| request_usage(c, &requests)).await,
            Backend::Postgres(b) => b.request_usage(&requests).await,
        }
    }

    /// Token totals of every model turn of every request of `session` (delegated
    /// children included).
    pub async fn session_usage(&self, session: &SessionId) -> Result<UsageTotals, StoreError> {
        match &self.backend {
            Backend::Sqlite(b) => {
                let session = session.clone();
                b.read(move |c| session_usage(c, &session)).await
            }
            Backend::Postgres(b) => b.session_usage(session).await,
        }
    }
}

/// PostgreSQL keeps step bodies as text too: the same sums over `body::jsonb`.
const PG_INPUT: &str = "(s.body::jsonb #>> '{info,usage,input_tokens}')::bigint";
const PG_OUTPUT: &str = "(s.body::jsonb #>> '{info,usage,output_tokens}')::bigint";

impl PgStore {
    async fn request_usage(
        &self,
        requests: &[RequestId],
    ) -> Result<HashMap<RequestId, UsageTotals>, StoreError> {
        let ids: Vec<String> = requests.iter().map(|r| r.to_string()).collect();
        let rows = self
            .read_rows(
                &format!(
                    "SELECT s.request_id, SUM({PG_INPUT})::bigint, SUM({PG_OUTPUT})::bigint, \
                     COUNT({PG_INPUT}) FROM steps s WHERE s.request_id = ANY($1) \
                     GROUP BY s.request_id HAVING COUNT({PG_INPUT}) > 0"
                ),
                &[&ids],
            )
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            out.insert(
                RequestId::from_trusted(r.try_get(0)?),
                totals(r.try_get(1)?, r.try_get(2)?, r.try_get(3)?),
            );
        }
        Ok(out)
    }

    async fn session_usage(&self, session: &SessionId) -> Result<UsageTotals, StoreError> {
        let rows = self
            .read_rows(
                &format!(
                    "SELECT SUM({PG_INPUT})::bigint, SUM({PG_OUTPUT})::bigint, COUNT({PG_INPUT}) \
                     FROM requests r JOIN steps s ON s.request_id = r.id WHERE r.session_id = $1"
                ),
                &[&session.as_str()],
            )
            .await?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Io("no row from a sum".into()))?;
        Ok(totals(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
    }
}

fn request_usage(
    c: &Connection,
    requests: &[RequestId],
) -> Result<HashMap<RequestId, UsageTotals>, StoreError> {
    let mut out = HashMap::new();
    for batch in requests.chunks(BATCH) {
        let marks = vec!["?"; batch.len()].join(", ");
        let sql = format!(
            "SELECT s.request_id, SUM({INPUT}), SUM({OUTPUT}), COUNT({INPUT}) FROM steps s \
             WHERE s.request_id IN ({marks}) GROUP BY s.request_id HAVING COUNT({INPUT}) > 0"
        );
        let mut stmt = c.prepare_cached(&sql)?;
        let ids = batch.iter().map(|r| r.as_str());
        let rows = stmt.query_map(rusqlite::params_from_iter(ids), |r| {
            Ok((
                RequestId::from_trusted(r.get(0)?),
                totals(r.get(1)?, r.get(2)?, r.get(3)?),
            ))
        })?;
        for row in rows {
            let (id, t) = row?;
            out.insert(id, t);
        }
    }
    Ok(out)
}

fn session_usage(c: &Connection, session: &SessionId) -> Result<UsageTotals, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT SUM({INPUT}), SUM({OUTPUT}), COUNT({INPUT}) \
         FROM requests r JOIN steps s ON s.request_id = r.id WHERE r.session_id = ?1"
    ))?;
    Ok(stmt.query_row([session.as_str()], |r| {
        Ok(totals(r.get(0)?, r.get(1)?, r.get(2)?))
    })?)
}

fn totals(input: Option<i64>, output: Option<i64>, turns: i64) -> UsageTotals {
    let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
    UsageTotals {
        input_tokens: n(input),
        output_tokens: n(output),
        turns: turns.max(0) as u64,
    }
}
