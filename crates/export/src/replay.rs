//! A recording read from an evidence package, for `runtime replay export`: the
//! package is verified first, and a changed one is refused.

use crate::bad_input;
use crate::verify::{APPROVALS, REQUESTS, read_verified};
use harness_core::*;
use harness_engine::replay::Recording;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct Entry {
    request: Request,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Roots {
    root_request_ids: Vec<RequestId>,
}

/// The recording of `request` (or of the package's one root request) in the
/// package at `path`.
pub fn recording(path: &Path, request: Option<&RequestId>) -> anyhow::Result<Recording> {
    let (report, files) = read_verified(path)?;
    if !report.ok {
        let problems: Vec<String> = report
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.file, p.problem))
            .collect();
        return Err(bad_input(format!(
            "`{}` does not match its manifest, so it is not replayed: {}",
            path.display(),
            problems.join("; ")
        )));
    }
    let read = |name: &str| {
        files
            .get(name)
            .ok_or_else(|| bad_input(format!("`{}` has no {name}", path.display())))
    };
    let entries: Vec<Entry> = serde_json::from_slice(read(REQUESTS)?)
        .map_err(|e| bad_input(format!("{REQUESTS} of `{}`: {e}", path.display())))?;
    let approvals: Vec<Approval> = serde_json::from_slice(read(APPROVALS)?)
        .map_err(|e| bad_input(format!("{APPROVALS} of `{}`: {e}", path.display())))?;
    let roots: Roots = serde_json::from_slice(read(crate::package::MANIFEST)?)
        .map_err(|e| bad_input(format!("manifest.json of `{}`: {e}", path.display())))?;
    let root = match (request, roots.root_request_ids.as_slice()) {
        (Some(r), _) => r.clone(),
        (None, [one]) => one.clone(),
        (None, many) => {
            let ids: Vec<&str> = many.iter().map(|r| r.as_str()).collect();
            return Err(bad_input(format!(
                "`{}` holds {} root requests ({}): name one with --request",
                path.display(),
                many.len(),
                ids.join(", ")
            )));
        }
    };
    let requests = entries.into_iter().map(|e| (e.request, e.steps)).collect();
    Ok(Recording::new(&root, requests, approvals)?)
}
