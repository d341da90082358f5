//! The scripted model: plays turns from a YAML script instead of calling an LLM.
//!
//! Used by tests, demos and benchmarks. The turn to play is the number of assistant
//! messages since the last user message, so a request replays the agent's script
//! from its first turn and a re-run after a crash picks the same turn again.
//!
//! ```yaml
//! agents:
//!   assistant:
//!     latency_ms: 0              # optional default per-turn latency
//!     turns:
//!       - tool_calls:
//!           - tool: send_mail
//!             arguments: { to: "ops@example.com" }
//!       - text: "done"
//!         latency_ms: 5          # optional per-turn latency
//!       - tool_calls: [{tool: word_count, arguments: {text: "a b"}}]
//!         repeat: 500            # played 500 times in a row
//! ```

use crate::{BoxFuture, Model, ModelError, ModelReply, ModelRequest};
use harness_core::{CallId, Message, ModelTurn, Role, ToolCall};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// A [`Model`] that answers from a script file.
#[derive(Debug)]
pub struct ScriptedModel {
    /// Where the script came from, for error messages.
    source: String,
    agents: HashMap<String, AgentScript>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    agents: BTreeMap<String, AgentFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    #[serde(default)]
    latency_ms: u64,
    turns: Vec<TurnFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnFile {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_calls: Vec<CallFile>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default = "one")]
    repeat: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallFile {
    tool: String,
    #[serde(default = "empty_object")]
    arguments: serde_json::Value,
}

fn one() -> u64 {
    1
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// One agent's turns, with cumulative repeat counts for lookup by index.
#[derive(Debug)]
struct AgentScript {
    turns: Vec<Turn>,
    /// Logical number of turns (sum of repeats).
    total: u64,
}

#[derive(Debug)]
struct Turn {
    /// Logical index one past this turn's last repetition.
    end: u64,
    text: String,
    calls: Vec<CallFile>,
    latency: Duration,
}

impl ScriptedModel {
    /// Loads a script file.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        Self::from_file_labeled(path, &path.display().to_string())
    }

    /// Loads a script file; `label` names it in error messages (e.g. the path
    /// relative to the workspace).
    pub fn from_file_labeled(path: &Path, label: &str) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Config(format!("cannot read script {label}: {e}")))?;
        Self::from_yaml_str(&text, label)
    }

    /// Parses a script; `source` names it in error messages.
    pub fn from_yaml_str(yaml: &str, source: &str) -> Result<Self, ModelError> {
        let file: ScriptFile = harness_config::from_yaml(yaml, Path::new(source))
            .map_err(|e| ModelError::Config(format!("script {e}")))?;
        let mut agents = HashMap::with_capacity(file.agents.len());
        for (name, agent) in file.agents {
            let script = AgentScript::build(agent)
                .map_err(|e| ModelError::Config(format!("script {source}: agent `{name}`: {e}")))?;
            agents.insert(name, script);
        }
        Ok(Self {
            source: source.to_string(),
            agents,
        })
    }

    /// The turn to play for `agent` given the conversation so far, and its latency.
    fn next_turn(
        &self,
        agent: &str,
        messages: &[Message],
    ) -> Result<(ModelTurn, Duration), ModelError> {
        let script = self
            .agents
            .get(agent)
            .ok_or_else(|| self.missing_agent(agent))?;
        let index = turn_index(messages);
        let turn = script.get(index).ok_or_else(|| {
            ModelError::Call(format!(
                "scripted model: agent `{agent}` has no turn {} in {} (it has {})",
                index + 1,
                self.source,
                script.total
            ))
        })?;
        Ok((turn.play(), turn.latency))
    }

    fn missing_agent(&self, agent: &str) -> ModelError {
        let mut names: Vec<&str> = self.agents.keys().map(String::as_str).collect();
        names.sort_unstable();
        ModelError::Call(format!(
            "scripted model: agent `{agent}` is not in {} (it has: {})",
            self.source,
            names.join(", ")
        ))
    }
}

impl Model for ScriptedModel {
    fn complete<'a>(
        &'a self,
        req: ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        let next = self.next_turn(req.agent, req.messages);
        Box::pin(async move {
            let (turn, latency) = next?;
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok(ModelReply::bare(turn))
        })
    }
}

/// Assistant messages after the last user message (all of them if there is none).
fn turn_index(messages: &[Message]) -> u64 {
    let count = messages
        .iter()
        .rev()
        .take_while(|m| m.role != Role::User)
        .filter(|m| m.role == Role::Assistant)
        .count();
    count as u64
}

impl AgentScript {
    fn build(agent: AgentFile) -> Result<Self, String> {
        let mut total: u64 = 0;
        let mut turns = Vec::with_capacity(agent.turns.len());
        for (i, turn) in agent.turns.into_iter().enumerate() {
            if turn.repeat == 0 {
                return Err(format!("turn {}: repeat must be at least 1", i + 1));
            }
            if turn.text.is_none() && turn.tool_calls.is_empty() {
                return Err(format!("turn {}: needs `text` or `tool_calls`", i + 1));
            }
            total = total.saturating_add(turn.repeat);
            let latency = turn.latency_ms.unwrap_or(agent.latency_ms);
            turns.push(Turn {
                end: total,
                text: turn.text.unwrap_or_default(),
                calls: turn.tool_calls,
                latency: Duration::from_millis(latency),
            });
        }
        Ok(Self { turns, total })
    }

    /// The turn at logical `index` (repeats expanded), by binary search.
    fn get(&self, index: u64) -> Option<&Turn> {
        let pos = self.turns.partition_point(|t| t.end <= index);
        self.turns.get(pos)
    }
}

impl Turn {
    fn play(&self) -> ModelTurn {
        if self.calls.is_empty() {
            return ModelTurn::Text {
                text: self.text.clone(),
            };
        }
        let calls = self
            .calls
            .iter()
            .map(|c| ToolCall {
                call_id: CallId::generate(),
                tool: c.tool.clone(),
                arguments: c.arguments.clone(),
            })
            .collect();
        ModelTurn::ToolCalls {
            text: self.text.clone(),
            calls,
        }
    }
}
