//! Concurrency limits: keys with a capacity that tool calls hold while they run.
//!
//! A key is a named resource from `config/workspace.yaml` (`resource:prod-db`) or a
//! tool's own `max_concurrent` (`tool:deploy`). A call acquires every key it needs
//! at once, in one transaction, or none: it never holds one key while waiting for
//! another, so waits cannot form a cycle. A call that cannot have them parks its
//! tree on the queue (a [`Wait`] per key) and holds no worker slot meanwhile.

use crate::ids::{CallId, RequestId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One key a call needs and how many calls may hold it at once.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Limit {
    pub key: String,
    pub capacity: u32,
}

impl Limit {
    /// A named resource (`resources:` in `config/workspace.yaml`).
    pub fn resource(name: &str, capacity: u32) -> Self {
        Self {
            key: format!("resource:{name}"),
            capacity,
        }
    }

    /// An agent's own `max_concurrent`.
    pub fn agent(name: &str, capacity: u32) -> Self {
        Self {
            key: format!("agent:{name}"),
            capacity,
        }
    }

    /// A tool's own `max_concurrent`.
    pub fn tool(name: &str, capacity: u32) -> Self {
        Self {
            key: format!("tool:{name}"),
            capacity,
        }
    }
}

/// Who holds a unit: "call_… of req_… (tool `deploy`)", or for an agent's limit,
/// held by a whole run, "req_… (its run)".
pub fn describe_holder(h: &Hold) -> String {
    if h.tool.is_empty() {
        format!("{} (its run)", h.request_id)
    } else {
        format!("{} of {} (tool `{}`)", h.call_id, h.request_id, h.tool)
    }
}

/// What waits, from a wait's or an event's `tool` (empty for an agent's run):
/// "its call of `deploy`", "its run".
pub fn describe_waiter(tool: &str) -> String {
    match tool {
        "" => "its run".to_string(),
        t => format!("its call of `{t}`"),
    }
}

/// How a key reads to an operator: "resource `prod-db`", "tool `deploy`".
pub fn describe_key(key: &str) -> String {
    match key.split_once(':') {
        Some((kind, name)) => format!("{kind} `{name}`"),
        None => format!("`{key}`"),
    }
}

/// A unit of a key held by a running tool call. It counts while the call's tree
/// runs: the call's completion releases it, and a tree that stops running (paused,
/// re-queued, settled, recovered after a crash) holds nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hold {
    pub key: String,
    /// The call holding it; for an agent's limits (held by a whole run) the
    /// request's own id.
    pub call_id: CallId,
    /// Empty for an agent's limits.
    pub tool: String,
    pub request_id: RequestId,
    pub root_id: RequestId,
    pub acquired_at: Timestamp,
    /// When the call's timeout ends: a hold older than this is a failing health check.
    pub until: Timestamp,
}

/// A request tree parked on the queue until a key has room: claimed again only
/// then. `request_id` is the request whose call waits (the root or a child).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Wait {
    pub root_id: RequestId,
    pub request_id: RequestId,
    pub call_id: CallId,
    pub tool: String,
    pub key: String,
    pub capacity: u32,
    pub since: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_their_kind_and_name() {
        assert_eq!(
            describe_key(&Limit::resource("prod-db", 1).key),
            "resource `prod-db`"
        );
        assert_eq!(describe_key(&Limit::tool("deploy", 2).key), "tool `deploy`");
    }
}
