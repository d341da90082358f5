//! Settling a request: its final answer, or its failure.

use super::{Outcome, Run};
use harness_core::*;

impl Run {
    /// The journal already ends in a final answer (e.g. a crash after the model's
    /// last turn was committed but before the request was marked completed).
    pub(super) async fn complete(&mut self, output: String) -> Outcome {
        let c = self
            .commit_for()
            .output(&output)
            .event(EventBody::RequestCompleted {
                output_bytes: output.len(),
                steps: self.steps.len() as u32,
            });
        match self.commit(c).await {
            Ok(()) => Outcome::Completed(output),
            Err(o) => o,
        }
    }

    pub(super) async fn fail(&mut self, reason: String) -> Outcome {
        let c = self
            .commit_for()
            .error(&reason)
            .event(EventBody::RequestFailed {
                error: reason.clone(),
            });
        match self.commit(c).await {
            Ok(()) => Outcome::Failed(reason),
            Err(o) => o,
        }
    }
}
