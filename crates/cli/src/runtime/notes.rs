//! `runtime requests annotate` and `runtime approvals annotate`: an operator's note,
//! recorded without deciding anything, and the notes shown by `show`.

use super::{approval_id, operator, request_id};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, line, paint};
use anyhow::Result;
use harness_core::*;
use harness_engine::Harness;
use std::process::ExitCode;

/// Events read per page when collecting notes.
const PAGE: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct AnnotateArgs {
    /// The id (`req_…` for a request, `apr_…` for an approval).
    pub id: String,
    /// The note.
    #[arg(long, short = 'm')]
    pub message: String,
    /// Who writes it (default: $USER, else `operator`).
    #[arg(long = "as", value_name = "NAME")]
    pub by: Option<String>,
}

/// Notes a request (`approval` false) or an approval.
pub async fn annotate(ctx: &Ctx, a: AnnotateArgs, approval: bool) -> Result<ExitCode> {
    let h = ctx.open_existing()?;
    let note = if approval {
        let id = approval_id(&h, &a.id).await?;
        let found = h.store().get_approval(&id).await?;
        Note {
            request_id: found.request_id,
            approval_id: Some(id),
            by: operator(a.by.as_deref()),
            text: a.message,
        }
    } else {
        Note {
            request_id: request_id(&h, &a.id).await?,
            approval_id: None,
            by: operator(a.by.as_deref()),
            text: a.message,
        }
    };
    let e = h.add_note(note).await?;
    if ctx.json {
        output::print_json(&e)?;
    } else {
        line(format!(
            "{} {} {}",
            paint(BOLD, "noted"),
            a.id,
            paint(DIM, format!("(event #{})", e.seq))
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every note on `requests`, oldest first.
pub async fn of(h: &Harness, requests: &[RequestId]) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    for id in requests {
        let filter = EventFilter {
            request_id: Some(id.clone()),
            ..Default::default()
        };
        let mut cursor = 0;
        loop {
            let page = h.store().events_after(cursor, filter.clone(), PAGE).await?;
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            let full = page.len() == PAGE;
            out.extend(page.into_iter().filter(|e| e.kind == EventKind::NoteAdded));
            if !full {
                break;
            }
        }
    }
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

/// `2026-01-05T17:03:00.000Z alice: text` (with the approval it is about, if any).
pub fn line_of(e: &Event) -> String {
    let p = &e.payload;
    let on = p["approval_id"]
        .as_str()
        .map(|a| format!(" on {a}"))
        .unwrap_or_default();
    format!(
        "{} {}{}: {}",
        paint(DIM, e.at),
        p["by"].as_str().unwrap_or("?"),
        paint(DIM, on),
        p["text"].as_str().unwrap_or("")
    )
}
