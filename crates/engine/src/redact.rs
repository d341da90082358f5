//! Secrets never reach a record. The worker redacts before it stores anything, with
//! the values of the workspace's secret variables as *its own* environment holds
//! them (an export run elsewhere may not have them):
//!
//! * every step commit — step bodies, the request's output and error, a raised
//!   approval, a delegated child's input, event payloads — through one call,
//!   [`Secrets::redact_commit`], in `Run::commit`;
//! * tool outputs and artifact bytes as tools return them ([`RedactingTools`]),
//!   before they are bounded into previews or written as artifacts, so a preview
//!   can never cut a secret in half and slip past;
//! * model turns as models return them ([`RedactingModel`]), for the same reason.
//!
//! Because the journal is what a run resumes from, the run itself only ever sees
//! the redacted values: a tool argument holding a secret reaches the tool as
//! `[REDACTED]`. Secrets for tools belong in their `env:` (`${VAR}`), never in what
//! a model writes. A request's input is the user's own text and is stored as given.

use harness_config::Workspace;
use harness_core::*;
use harness_providers::{
    BoxFuture, Model, ModelError, ModelReply, ModelRequest, ToolContext, ToolOutput,
};
use harness_store::{RequestPatch, StepCommit, StepWrite};
use std::sync::Arc;

/// Looks up an environment variable (tests inject one instead of the process's).
pub type SecretEnv = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The worker's redactor.
#[derive(Clone, Debug, Default)]
pub(crate) struct Secrets(pub(crate) Redactor);

impl Secrets {
    /// The values of the workspace's secret variables, read with `env` (None: this
    /// process's environment), and the secrets written literally in its configuration.
    pub(crate) fn for_workspace(ws: &Workspace, env: Option<&SecretEnv>) -> Self {
        let read = |name: &str| match env {
            Some(f) => f(name),
            None => std::env::var(name).ok(),
        };
        let mut values = ws.literal_secrets();
        for name in ws.secret_env_names() {
            let Some(value) = read(&name) else { continue };
            if !value.is_empty() && value.len() < redact::MIN_SECRET_LEN {
                // The name only: the value is what must not be logged.
                tracing::warn!(
                    variable = %name,
                    "the value of this secret variable is shorter than {} characters: \
                     it is not redacted by value",
                    redact::MIN_SECRET_LEN
                );
            }
            values.push(value);
        }
        // The database URL is a secret (it is among the names above); its password
        // is one on its own too.
        if let Some(pg) = &ws.stores.postgres
            && let Some(password) =
                read(&pg.url_env).and_then(|u| harness_store::PgConfig::password_of(&u))
        {
            values.push(password);
        }
        Secrets(Redactor::new(values))
    }

    /// Redacts everything a step commit writes that can hold text from a model, a
    /// tool or an operator. Ids, names, statuses and artifact rows (their bytes were
    /// redacted when the tool returned them) are left as they are.
    pub(crate) fn redact_commit(&self, c: &mut StepCommit) {
        let r = &self.0;
        // Destructured in full: a new field must be decided on here.
        let StepCommit {
            request_id: _,
            session_id: _,
            at: _,
            steps,
            patch,
            approval,
            pause_on: _,
            child,
            artifacts: _,
            ancestors: _,
            events,
            // Keys, ids and names from the configuration only.
            acquire: _,
        } = c;
        for write in steps {
            let (StepWrite::Insert(step) | StepWrite::Update(step)) = write;
            redact_body(r, &mut step.body);
        }
        let RequestPatch {
            status: _,
            current_agent: _,
            output,
            error,
            count_step: _,
            settled_ok: _,
        } = patch;
        for text in [output, error].into_iter().flatten() {
            r.redact_string(text);
        }
        if let Some(a) = approval {
            redact_approval(r, a);
        }
        if let Some(child) = child {
            r.redact_string(&mut child.input);
        }
        for e in events {
            r.redact_json(&mut e.payload);
        }
    }
}

fn redact_body(r: &Redactor, body: &mut StepBody) {
    match body {
        StepBody::ModelTurn { turn, info } => {
            redact_turn(r, turn);
            redact_info(r, info);
        }
        StepBody::ToolCall {
            call,
            approval_id: _,
            outcome,
            child_request_id: _,
        } => {
            r.redact_json(&mut call.arguments);
            if let Some(o) = outcome {
                r.redact_string(&mut o.content);
            }
        }
    }
}

fn redact_turn(r: &Redactor, turn: &mut ModelTurn) {
    match turn {
        ModelTurn::Text { text } => {
            r.redact_string(text);
        }
        ModelTurn::ToolCalls { text, calls } => {
            r.redact_string(text);
            for call in calls {
                r.redact_json(&mut call.arguments);
            }
        }
    }
}

/// Thinking text is redacted like any text (a block whose text changed no longer
/// matches its signature, so the provider may refuse it back: a secret never stays).
fn redact_info(r: &Redactor, info: &mut TurnInfo) {
    for t in &mut info.thinking {
        r.redact_string(&mut t.text);
    }
}

fn redact_approval(r: &Redactor, a: &mut Approval) {
    r.redact_json(&mut a.arguments);
    if let Some(e) = &mut a.edited_arguments {
        r.redact_json(e);
    }
    for text in [&mut a.message, &mut a.reason].into_iter().flatten() {
        r.redact_string(text);
    }
}

/// An operator's decision as it will be stored: message and edited arguments redacted.
pub(crate) fn redact_resolution(r: &Redactor, d: &mut ResolveApproval) {
    if let Some(m) = &mut d.message {
        r.redact_string(m);
    }
    if let Some(e) = &mut d.edited_arguments {
        r.redact_json(e);
    }
}

/// Tools whose output and artifact bytes come back redacted.
pub(crate) struct RedactingTools {
    pub(crate) inner: Arc<dyn harness_providers::ToolRunner>,
    pub(crate) redactor: Redactor,
}

impl harness_providers::ToolRunner for RedactingTools {
    fn run<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a serde_json::Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let mut out = self.inner.run(tool, arguments, ctx).await;
            self.redactor.redact_string(&mut out.content);
            for a in &mut out.artifacts {
                if let std::borrow::Cow::Owned(b) = self.redactor.redact_bytes(&a.bytes) {
                    a.bytes = b;
                }
            }
            out
        })
    }
}

/// A model whose turns (text, thinking, raw response) and errors come back redacted:
/// a provider's error may quote what it was sent, or the key it refused.
pub(crate) struct RedactingModel {
    pub(crate) inner: Arc<dyn Model>,
    pub(crate) redactor: Redactor,
}

impl Model for RedactingModel {
    fn complete<'a>(
        &'a self,
        req: ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(async move {
            let mut reply = self
                .inner
                .complete(req)
                .await
                .map_err(|e| e.redacted(&self.redactor))?;
            redact_turn(&self.redactor, &mut reply.turn);
            redact_info(&self.redactor, &mut reply.info);
            if let Some(raw) = &mut reply.raw
                && let Some(b) = redact_raw(&self.redactor, &raw.media_type, &raw.bytes)
            {
                raw.bytes = b;
            }
            Ok(reply)
        })
    }
}

/// A raw response redacted (None: nothing to change). An event stream line by line:
/// each event is one `data:` line of JSON (newlines escaped), so what the whole text
/// would match lies within one line (a value split across two events is found in
/// neither form), and the costly shape rules run only on the few lines that may hold
/// one — a usage line's `prompt_tokens`, not every line of text pieces (~200 µs
/// saved per turn of a 40-piece stream).
fn redact_raw(r: &Redactor, media_type: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) if media_type == "text/event-stream" => text,
        _ => {
            return match r.redact_bytes(bytes) {
                std::borrow::Cow::Owned(b) => Some(b),
                std::borrow::Cow::Borrowed(_) => None,
            };
        }
    };
    let mut out: Option<String> = None;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        match (r.redact_str(line), &mut out) {
            (std::borrow::Cow::Owned(l), Some(o)) => o.push_str(&l),
            (std::borrow::Cow::Owned(l), None) => {
                let mut o = String::with_capacity(text.len());
                o.push_str(&text[..start]);
                o.push_str(&l);
                out = Some(o);
            }
            (std::borrow::Cow::Borrowed(l), Some(o)) => o.push_str(l),
            (std::borrow::Cow::Borrowed(_), None) => {}
        }
        start += line.len();
    }
    out.map(String::into_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_store::NewRequest;
    use serde_json::json;

    const SECRET: &str = "sk-live-0123456789";

    fn call() -> ToolCall {
        ToolCall {
            call_id: CallId::generate(),
            tool: "t".into(),
            arguments: json!({"q": SECRET, "max_tokens": 5}),
        }
    }

    fn step(idx: u32, body: StepBody) -> Step {
        Step {
            request_id: RequestId::generate(),
            idx,
            agent: "a".into(),
            status: StepStatus::Completed,
            started_at: Timestamp(0),
            finished_at: None,
            body,
        }
    }

    /// Every text field of a commit holds the secret; none does after redaction.
    #[test]
    fn a_commit_keeps_no_secret_anywhere() {
        let req = RequestId::generate();
        let ses = SessionId::generate();
        let said = format!("use {SECRET}");
        let mut c = StepCommit {
            pause_on: None,
            acquire: None,
            request_id: req.clone(),
            session_id: ses.clone(),
            at: Timestamp(0),
            steps: vec![
                StepWrite::Insert(step(
                    0,
                    StepBody::ModelTurn {
                        turn: ModelTurn::ToolCalls {
                            text: said.clone(),
                            calls: vec![call()],
                        },
                        info: TurnInfo {
                            thinking: vec![Thinking {
                                text: said.clone(),
                                signature: Some("sig".into()),
                                redacted: None,
                            }],
                            ..Default::default()
                        },
                    },
                )),
                StepWrite::Update(step(
                    1,
                    StepBody::ToolCall {
                        call: call(),
                        approval_id: None,
                        outcome: Some(ToolOutcome {
                            ok: true,
                            content: said.clone(),
                            artifact: None,
                        }),
                        child_request_id: None,
                    },
                )),
                StepWrite::Insert(step(
                    2,
                    StepBody::model_turn(ModelTurn::Text { text: said.clone() }),
                )),
            ],
            patch: RequestPatch {
                output: Some(said.clone()),
                error: Some(said.clone()),
                ..Default::default()
            },
            approval: Some(Approval {
                id: ApprovalId::generate(),
                request_id: req.clone(),
                session_id: ses.clone(),
                agent: "a".into(),
                step_idx: 1,
                call_id: CallId::generate(),
                tool: "t".into(),
                arguments: json!({"password": "hunter2", "q": SECRET}),
                status: ApprovalStatus::Pending,
                decided_by: None,
                decided_by_kind: None,
                message: Some(said.clone()),
                edited_arguments: Some(json!([SECRET])),
                created_at: Timestamp(0),
                decided_at: None,
                expires_at: Timestamp(1),
                reason: Some(said.clone()),
            }),
            child: Some(NewRequest {
                id: RequestId::generate(),
                session_id: ses.clone(),
                agent: "b".into(),
                input: said.clone(),
                trace_id: "t".into(),
                traceparent: None,
                priority: 0,
            }),
            artifacts: vec![],
            ancestors: vec![],
            events: vec![NewEvent::for_request(
                EventKind::ToolStarted,
                &req,
                &ses,
                json!({"arguments": {"q": SECRET}, "preview": said}),
            )],
        };
        let before = format!("{c:?}");
        assert!(before.contains(SECRET) && before.contains("hunter2"));
        Secrets(Redactor::new([SECRET])).redact_commit(&mut c);
        let after = format!("{c:?}");
        assert!(!after.contains(SECRET), "{after}");
        assert!(!after.contains("hunter2"), "{after}");
        assert!(after.contains("max_tokens"), "harmless keys stay: {after}");
    }

    #[test]
    fn secrets_come_from_the_given_environment() {
        let dir = tempfile::tempdir().unwrap();
        harness_config::init(dir.path(), false).unwrap();
        let models = dir.path().join("config/models.yaml");
        let text = std::fs::read_to_string(&models).unwrap().replace(
            "models:\n",
            "models:\n  gpt:\n    provider: openai\n    model: x\n    api_key_env: K\n",
        );
        std::fs::write(models, text).unwrap();
        let ws = harness_config::load(dir.path()).unwrap();
        let env: SecretEnv = Arc::new(|n: &str| (n == "K").then(|| SECRET.to_string()));
        let s = Secrets::for_workspace(&ws, Some(&env));
        assert_eq!(s.0.redact_str(&format!("k={SECRET}!")), "k=[REDACTED]!");
        let none: SecretEnv = Arc::new(|_: &str| None);
        assert_eq!(Secrets::for_workspace(&ws, Some(&none)).0.value_count(), 0);
    }

    #[test]
    fn an_event_stream_is_redacted_line_by_line_as_a_whole_text_would_be() {
        let r = Redactor::new(["sk-live-0123456789"]);
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"use sk-live-0123456789 \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"then password=hunter2 and \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"postgres://u:pw@db/x\"}}]}\n\n",
            "data: {\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        );
        let whole = r.redact_bytes(stream.as_bytes()).into_owned();
        let lines = redact_raw(&r, "text/event-stream", stream.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(lines).unwrap(),
            String::from_utf8(whole).unwrap()
        );
        let text =
            String::from_utf8(redact_raw(&r, "text/event-stream", stream.as_bytes()).unwrap())
                .unwrap();
        assert!(
            !text.contains("sk-live") && !text.contains("hunter2") && !text.contains(":pw@"),
            "{text}"
        );
        assert!(text.contains("\"prompt_tokens\":12"), "{text}");
        let clean = "data: {\"usage\":{\"prompt_tokens\":12}}\n\ndata: [DONE]\n\n";
        assert_eq!(redact_raw(&r, "text/event-stream", clean.as_bytes()), None);
        assert_eq!(
            redact_raw(&r, "application/json", b"{\"k\": \"sk-live-0123456789\"}").unwrap(),
            b"{\"k\": \"[REDACTED]\"}"
        );
    }
}
