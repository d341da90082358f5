//! The state machines of requests, approvals and steps. The store enforces
//! them with conditional updates; these functions say which moves are legal.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

impl ApprovalStatus {
    /// Only a pending approval can be decided; every decision is final.
    pub fn can_move_to(self, to: ApprovalStatus) -> bool {
        self == ApprovalStatus::Pending && to != ApprovalStatus::Pending
    }
}

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

impl StepStatus {
    pub fn can_move_to(self, to: StepStatus) -> bool {
        use StepStatus::*;
        matches!(
            (self, to),
            (AwaitingApproval, Started | Completed)
                | (Started, Completed | Interrupted)
                | (Interrupted, Started)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_request_status() -> impl Strategy<Value = RequestStatus> {
        proptest::sample::select(RequestStatus::ALL.to_vec())
    }
    fn any_approval_status() -> impl Strategy<Value = ApprovalStatus> {
        proptest::sample::select(ApprovalStatus::ALL.to_vec())
    }

    proptest! {
        /// No walk through legal moves ever leaves a terminal state.
        #[test]
        fn terminal_request_states_are_absorbing(walk in proptest::collection::vec(any_request_status(), 1..40)) {
            let mut state = RequestStatus::Queued;
            for next in walk {
                if state.can_move_to(next) {
                    prop_assert!(!state.is_terminal());
                    state = next;
                }
            }
        }

        /// An approval is decided at most once, whatever is attempted after.
        #[test]
        fn approvals_decide_once(attempts in proptest::collection::vec(any_approval_status(), 1..20)) {
            let mut state = ApprovalStatus::Pending;
            let mut decisions = 0;
            for to in attempts {
                if state.can_move_to(to) {
                    state = to;
                    decisions += 1;
                }
            }
            prop_assert!(decisions <= 1);
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
