//! `load`: reads every configuration file of a workspace folder, validates the
//! whole, and returns the [`Workspace`] or every problem found.

use crate::error::{ConfigError, ConfigErrors};
use crate::parse::{Parsed, Source, parse, read};
use crate::types::{
    AgentConfig, McpFile, ModelsFile, StoresFile, ToolsFile, Workspace, WorkspaceFile,
};
use crate::validate;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

pub const WORKSPACE_FILE: &str = "config/workspace.yaml";
pub const MODELS_FILE: &str = "config/models.yaml";
pub const AGENTS_DIR: &str = "config/agents";
pub const TOOLS_FILE: &str = "config/tools.yaml";
pub const MCP_FILE: &str = "config/mcp.yaml";
pub const STORES_FILE: &str = "config/stores.yaml";
pub const SKILLS_DIR: &str = "resources/skills";
/// The folder the requests' work folders are in.
pub const WORK_DIR: &str = "work";

/// Every file of a workspace, parsed (`None`: missing or unparsable, already reported).
pub(crate) struct Files {
    pub workspace: Option<Parsed<WorkspaceFile>>,
    pub models: Option<Parsed<ModelsFile>>,
    pub tools: Option<Parsed<ToolsFile>>,
    pub mcp: Option<Parsed<McpFile>>,
    pub stores: Option<Parsed<StoresFile>>,
    pub agents: Vec<Parsed<AgentConfig>>,
    /// Whether every agent file parsed (otherwise delegates may look unknown).
    pub agents_complete: bool,
    pub skills: std::collections::BTreeMap<String, crate::Skill>,
    /// Every skill folder's name (also those whose SKILL.md has errors).
    pub skill_names: Vec<String>,
}

/// Loads and validates the workspace in folder `root`.
pub fn load(root: &Path) -> Result<Workspace, ConfigErrors> {
    let root = workspace_root(root)?;
    let mut errors = Vec::new();
    let files = read_files(&root, &mut errors);
    match validate::assemble(root, files, &mut errors) {
        Some(workspace) if errors.is_empty() => Ok(workspace),
        _ => {
            errors.sort_by_key(report_order);
            Err(ConfigErrors(errors))
        }
    }
}

/// Errors are reported file by file (in the order files are read), top to bottom.
fn report_order(e: &ConfigError) -> (usize, PathBuf, usize, usize) {
    let order = [
        WORKSPACE_FILE,
        MODELS_FILE,
        TOOLS_FILE,
        MCP_FILE,
        STORES_FILE,
    ];
    let rank = order
        .iter()
        .position(|f| e.file == Path::new(f))
        .unwrap_or(order.len());
    (
        rank,
        e.file.clone(),
        e.line.unwrap_or(0),
        e.column.unwrap_or(0),
    )
}

/// The absolute workspace folder, which must hold `config/workspace.yaml`.
fn workspace_root(given: &Path) -> Result<PathBuf, ConfigError> {
    let shown = given.display();
    let hint = format!("create one with `agent-harness init {shown}`");
    if !given.exists() {
        let msg = format!("no workspace at `{shown}`: the folder does not exist ({hint})");
        return Err(ConfigError::file("", msg));
    }
    let root = given
        .canonicalize()
        .map_err(|e| ConfigError::file("", format!("cannot open workspace `{shown}`: {e}")))?;
    if !root.join(WORKSPACE_FILE).is_file() {
        let msg = format!("no workspace at `{shown}`: `{WORKSPACE_FILE}` is missing ({hint})");
        return Err(ConfigError::file("", msg));
    }
    Ok(root)
}

fn read_files(root: &Path, errors: &mut Vec<ConfigError>) -> Files {
    let workspace = required(root, WORKSPACE_FILE, errors);
    let models = required(root, MODELS_FILE, errors);
    let tools = optional(root, TOOLS_FILE, errors);
    let mcp = optional(root, MCP_FILE, errors);
    let stores = optional(root, STORES_FILE, errors);
    let (agents, agents_complete) = read_agents(root, errors);
    let (skills, skill_names) = crate::skills::read_skills(root, errors);
    Files {
        workspace,
        models,
        tools,
        mcp,
        stores,
        agents,
        agents_complete,
        skills,
        skill_names,
    }
}

fn required<T: DeserializeOwned>(
    root: &Path,
    rel: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Parsed<T>> {
    match read(root, Path::new(rel)) {
        Ok(Some(src)) => parse(src).map_err(|mut e| errors.append(&mut e)).ok(),
        Ok(None) => {
            errors.push(ConfigError::file(rel, "file is missing (it is required)"));
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// A missing optional file reads as an empty one (all defaults).
fn optional<T: DeserializeOwned>(
    root: &Path,
    rel: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Parsed<T>> {
    let empty = || Source::new(rel, String::new());
    match read(root, Path::new(rel)) {
        Ok(src) => parse(src.unwrap_or_else(empty))
            .map_err(|mut e| errors.append(&mut e))
            .ok(),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// `config/agents/*.yaml`, sorted by file name; at least one is required.
fn read_agents(root: &Path, errors: &mut Vec<ConfigError>) -> (Vec<Parsed<AgentConfig>>, bool) {
    let files = agent_files(root, errors);
    if files.is_empty() {
        let msg = format!("no agents: add at least one `{AGENTS_DIR}/NAME.yaml`");
        errors.push(ConfigError::file(AGENTS_DIR, msg));
    }
    let before = errors.len();
    let agents = files
        .into_iter()
        .filter_map(|rel| match read(root, &rel) {
            Ok(Some(src)) => parse(src).map_err(|mut e| errors.append(&mut e)).ok(),
            Ok(None) => None,
            Err(e) => {
                errors.push(e);
                None
            }
        })
        .collect();
    (agents, errors.len() == before)
}

/// Relative paths of the agent files; a `.yml` file is reported, not skipped silently.
fn agent_files(root: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join(AGENTS_DIR)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| Path::new(AGENTS_DIR).join(e.file_name()))
        .filter(|rel| match rel.extension().and_then(|x| x.to_str()) {
            Some("yaml") => true,
            Some("yml") => {
                errors.push(ConfigError::file(
                    rel,
                    "agent files must end in `.yaml`; rename this file",
                ));
                false
            }
            _ => false,
        })
        .collect();
    files.sort();
    files
}
