//! What a queued request waits for: a limit others hold (and who), its session's
//! earlier request, or a worker slot. One projection of the records
//! (`harness_engine::views::waiting`), shared by `requests show`, `doctor`,
//! `overview` and the web console, which all say it with [`WaitsFor::text`].

use harness_core::*;
pub use harness_engine::views::WaitsFor;

/// One line: "resource `prod-db` (1/1 held by call_… of req_…, tool deploy, for 12s)".
pub fn text(w: &WaitsFor, now: Timestamp) -> String {
    w.text(now)
}
