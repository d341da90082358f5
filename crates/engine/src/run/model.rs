//! Model turns, and pre-starting the call a turn proposes so each step costs
//! one commit.

use super::{Flow, Outcome, Run, calls::tool_body};
use harness_config::{ApprovalPolicy, Builtin};
use harness_core::*;
use harness_providers::{DeltaSink, ModelError, ModelReply, ModelRequest, ToolSpec};
use harness_store::StepCommit;

impl Run {
    pub(super) async fn model_turn(&mut self) -> Flow<()> {
        self.check_max_steps().await?;
        let model = match self.h.model(&self.agent.model) {
            Ok(m) => m,
            Err(e) => return Err(self.fail(e.to_string()).await),
        };
        let specs = self.tool_specs();
        let idx = self.next_idx();
        let sink = self.h.inner.deltas.sink(
            &self.req.id,
            &self.req.session_id,
            &self.agent.name,
            idx,
            self.h.redactor(),
        );
        let messages = crate::context::fit_counted(
            &self.messages,
            &self.agent.context,
            &mut self.context_size,
        );
        let started_at = self.h.now();
        // A graceful stop lets a call in flight finish, but one still waiting (for
        // its rate limit, or to retry) gives up: nothing was answered, the request
        // is parked.
        let stop_waiting = tokio_util::sync::CancellationToken::new();
        let mut stopping = self.h.inner.stopping.subscribe();
        let on_stop = async {
            let _ = stopping.wait_for(|s| *s).await;
            stop_waiting.cancel();
            std::future::pending::<()>().await
        };
        let configured = self.h.inner.workspace.models.get(&self.agent.model);
        let span = tracing::info_span!(
            "model.call",
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = tracing::field::Empty,
            gen_ai.request.model = configured.map(|m| m.model.as_str()).unwrap_or_default(),
            model = %self.agent.model,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let traceparent = crate::telemetry::traceparent_of(&span);
        let asked = model.complete(ModelRequest {
            agent: &self.agent.name,
            request_id: &self.req.id,
            trace_id: Some(&self.req.trace_id),
            traceparent: traceparent.as_deref(),
            messages: &messages,
            tools: &specs,
            deltas: Some(&sink as &dyn DeltaSink),
            stop_waiting: Some(&stop_waiting),
        });
        // Cancel or abort drops the call in flight (an HTTP call's connection is
        // closed), or its wait for a rate limit: nothing is recorded, and a later
        // run asks the model again.
        let asked = tracing::Instrument::instrument(asked, span.clone());
        let reply = tokio::select! {
            reply = asked => reply,
            () = self.cancel.cancelled() => return Err(self.interruption()),
            () = on_stop => unreachable!("on_stop never ends"),
        };
        match &reply {
            Ok(r) => {
                if !r.info.provider.is_empty() {
                    span.record("gen_ai.provider.name", r.info.provider.as_str());
                }
                if !r.info.model.is_empty() {
                    span.record("gen_ai.response.model", r.info.model.as_str());
                }
                if let Some(u) = &r.info.usage {
                    span.record("gen_ai.usage.input_tokens", u.input_tokens);
                    span.record("gen_ai.usage.output_tokens", u.output_tokens);
                }
                let kind = match &r.turn {
                    ModelTurn::Text { .. } => "text",
                    ModelTurn::ToolCalls { .. } => "tool_calls",
                };
                span.record("outcome", kind);
            }
            Err(e) => {
                span.record("outcome", "error");
                span.record("otel.status_code", "error");
                tracing::debug!(parent: &span, error = %e, "model call failed");
            }
        }
        drop(span);
        let ModelReply {
            mut turn,
            mut info,
            raw,
        } = match reply {
            Ok(r) => r,
            Err(ModelError::Stopped(_)) => return Err(Outcome::Stopped),
            Err(e) => return Err(self.fail(e.to_string()).await),
        };
        if let Some(u) = &info.usage {
            // Counted when the model answered, whether or not the turn is committed:
            // the provider bills it either way.
            let m = &self.h.inner.metrics;
            m.count_tokens(&self.agent.model, u.input_tokens, u.output_tokens);
        }
        if let ModelTurn::ToolCalls { calls, .. } = &mut turn {
            for c in calls {
                c.tool = harness_providers::runtime_tool_name(&c.tool, &specs);
            }
        }
        let mut artifacts = vec![];
        if let Some(raw) = raw {
            // Evidence, not a result: a failure to keep it costs the turn nothing.
            let name = format!("model-turn-{idx}.{}", raw.extension);
            let kept = self
                .h
                .inner
                .store
                .put_artifact(
                    &self.req.id,
                    &self.req.session_id,
                    &name,
                    &raw.media_type,
                    &raw.bytes,
                    self.h.now(),
                )
                .await;
            match kept {
                Ok(a) => {
                    info.raw_artifact = Some(a.id.clone());
                    artifacts.push(a);
                }
                Err(e) => {
                    tracing::warn!(request = %self.req.id, error = %e, "could not keep a raw model response")
                }
            }
        }
        let mut step = self.new_step(
            StepStatus::Completed,
            StepBody::ModelTurn {
                turn: turn.clone(),
                info: info.clone(),
            },
        );
        step.started_at = started_at;
        let next_idx = step.idx + 1;
        let mut c = self
            .commit_for()
            .event(EventBody::ModelTurn {
                step: step.idx,
                turn: turn.clone(),
                info: (!info.is_empty()).then(|| Box::new(info)),
            })
            .count_step()
            .artifacts(artifacts);
        if let ModelTurn::Text { text } = &turn {
            // The final answer and the request's completion are one commit.
            c = c.output(text).event(EventBody::RequestCompleted {
                output_bytes: text.len(),
                steps: next_idx,
            });
        }
        c = c.insert(step);
        if let ModelTurn::ToolCalls { calls, .. } = &turn
            && let Some(first) = calls.first()
        {
            c = self.prestart(c, first, next_idx);
        }
        self.commit(c).await?;
        if let ModelTurn::Text { text } = turn {
            return Err(Outcome::Completed(text));
        }
        Ok(())
    }
    /// Adds `call`'s `started` row (and event) to commit `c` when the call can run
    /// right away — a known tool of this agent, valid arguments, no approval, not a
    /// delegation, the worker not stopping — so each step costs one commit. The row
    /// is durable before the call runs, as always.
    pub(super) fn prestart(&mut self, c: StepCommit, call: &ToolCall, idx: u32) -> StepCommit {
        let runnable = crate::tools::offers(&self.agent, &call.tool)
            && call.tool != Builtin::Delegate.name()
            && (idx as usize) < self.agent.max_steps as usize
            && !self.h.stopping()
            && !self.cancel.is_cancelled()
            && crate::tools::refusal(&self.agent, call).is_none()
            && self.h.tool(&call.tool).is_some_and(|t| {
                t.approval == ApprovalPolicy::Never
                    // A call with limits acquires them with its own `started` commit.
                    && t.concurrency_limits(&call.tool, &self.h.inner.workspace.settings.resources).is_empty()
                    && t.check_arguments(&call.arguments).is_ok()
            });
        if !runnable {
            return c;
        }
        let mut step = self.new_step(StepStatus::Started, tool_body(call, None, None));
        step.idx = idx;
        self.live_started.insert(call.call_id.clone());
        c.insert(step).event(EventBody::ToolStarted {
            call: call.clone(),
            note: None,
        })
    }

    pub(super) async fn check_max_steps(&mut self) -> Flow<()> {
        if self.steps.len() as u32 >= self.agent.max_steps {
            let msg = format!(
                "exceeded the agent's max_steps ({}) of agent `{}`",
                self.agent.max_steps, self.agent.name
            );
            return Err(self.fail(msg).await);
        }
        Ok(())
    }

    fn tool_specs(&self) -> Vec<ToolSpec> {
        self.h.tool_specs(&self.agent)
    }
}
