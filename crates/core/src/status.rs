//! The statuses of requests, approvals and steps. A request's legal moves are
//! [`RequestStatus::can_move_to`]: the store makes every status update
//! conditional on them. An approval moves only out of `pending`, once (the
//! store's `… AND status = 'pending'` update); a step is rewritten in place by its
//! own run.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s).ok_or_else(|| {
                    let all: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("`{s}` is not one of: {}", all.join(", "))
                })
            }
        }
    };
}

string_enum!(
    /// Where a request is in its life.
    RequestStatus {
        /// Admitted and runnable; waiting for a worker slot.
        Queued => "queued",
        /// Claimed by a worker that is executing its steps.
        Running => "running",
        /// Paused on an approval; holds no worker slot.
        WaitingApproval => "waiting_approval",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl RequestStatus {
    /// Finished: nothing will ever run for this request again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether the runtime may move a request from `self` to `to`.
    pub fn can_move_to(self, to: RequestStatus) -> bool {
        use RequestStatus::*;
        match (self, to) {
            (Queued, Running | Cancelled | Failed) => true,
            // Recovery and graceful stop put running work back on the queue.
            (Running, Queued | WaitingApproval | Completed | Failed | Cancelled) => true,
            // A resolution (or expiry) makes the request runnable again, or fails it.
            (WaitingApproval, Queued | Failed | Cancelled) => true,
            _ => false,
        }
    }

    /// Every status that may move to `to`. The store's status updates are
    /// conditional on these (`… WHERE status IN (sources)`), so the table above is
    /// what the store enforces.
    pub fn sources(to: RequestStatus) -> Vec<RequestStatus> {
        Self::ALL
            .iter()
            .copied()
            .filter(|from| from.can_move_to(to))
            .collect()
    }
}

string_enum!(
    /// The state of one approval.
    ApprovalStatus {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
        Expired => "expired",
    }
);

string_enum!(
    /// The state of one step of a request's journal.
    StepStatus {
        /// A tool call recorded before it runs.
        Started => "started",
        /// A tool call waiting for an operator decision.
        AwaitingApproval => "awaiting_approval",
        Completed => "completed",
        /// A tool call that was started but never completed (the worker died).
        Interrupted => "interrupted",
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_request_status() -> impl Strategy<Value = RequestStatus> {
        proptest::sample::select(RequestStatus::ALL.to_vec())
    }

    // What the store does with these moves is property-tested against the store
    // itself (crates/store/tests/{trees,approvals,queue}_model.rs), not here.

    proptest! {
        /// The store's updates are conditional on `sources`: it must be exactly the
        /// statuses `can_move_to` allows, and no settled status may move.
        #[test]
        fn sources_are_the_legal_moves(to in any_request_status()) {
            for from in RequestStatus::ALL {
                prop_assert_eq!(RequestStatus::sources(to).contains(from), from.can_move_to(to));
                prop_assert!(!(from.is_terminal() && from.can_move_to(to)));
            }
        }

        #[test]
        fn status_strings_round_trip(s in any_request_status()) {
            prop_assert_eq!(RequestStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn unknown_status_lists_the_valid_ones() {
        let err = "done".parse::<RequestStatus>().unwrap_err();
        assert!(err.contains("queued, running, waiting_approval"), "{err}");
    }
}
