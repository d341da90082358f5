//! The built-in tools' default configurations: description, argument schema,
//! approval and idempotency. `config/tools.yaml` may override some of these.

use crate::types::{ApprovalPolicy, Builtin, ToolConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The configuration a built-in tool has unless `tools.yaml` overrides it.
pub fn builtin_tool(b: Builtin) -> ToolConfig {
    ToolConfig {
        description: description(b).to_string(),
        builtin: Some(b),
        command: None,
        env: BTreeMap::new(),
        arguments: arguments(b),
        timeout: Duration::from_secs(60),
        approval: ApprovalPolicy::Never,
        idempotent: matches!(
            b,
            Builtin::ReadFile | Builtin::ListFiles | Builtin::LoadSkill
        ),
        allow_shell_placeholders: false,
        max_concurrent: None,
        uses: vec![],
        limits: crate::types::CommandLimits::default(),
    }
}

/// The built-in tool called `name`, if there is one.
pub fn builtin_named(name: &str) -> Option<Builtin> {
    Builtin::ALL.iter().copied().find(|b| b.name() == name)
}

fn description(b: Builtin) -> &'static str {
    match b {
        Builtin::ReadFile => "Read a text file from the work folder.",
        Builtin::WriteFile => "Write a text file in the work folder (replacing it if it exists).",
        Builtin::ListFiles => "List the files in the work folder, or in one of its subfolders.",
        Builtin::WriteArtifact => "Store a named artifact (a result file) of this request.",
        Builtin::Delegate => "Hand a task to another agent and get its final answer.",
        Builtin::LoadSkill => "Load the full instructions of one of your skills, by name.",
    }
}

fn arguments(b: Builtin) -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    let (properties, required) = match b {
        Builtin::ReadFile => (
            json!({"path": s("Path relative to the work folder.")}),
            json!(["path"]),
        ),
        Builtin::WriteFile => (
            json!({"path": s("Path relative to the work folder."), "content": s("The full file contents.")}),
            json!(["path", "content"]),
        ),
        Builtin::ListFiles => (
            json!({"path": s("Subfolder relative to the work folder (default: the work folder).")}),
            json!([]),
        ),
        Builtin::WriteArtifact => (
            json!({
                "name": s("File name of the artifact, e.g. summary.md."),
                "content": s("The artifact's contents."),
                "media_type": s("Media type, e.g. text/markdown (default: text/plain).")
            }),
            json!(["name", "content"]),
        ),
        Builtin::Delegate => (
            json!({"agent": s("The agent to delegate to."), "input": s("The task for that agent.")}),
            json!(["agent", "input"]),
        ),
        Builtin::LoadSkill => (
            json!({"name": s("The skill's name, as listed in your instructions.")}),
            json!(["name"]),
        ),
    };
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}
