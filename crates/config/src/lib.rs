//! Workspace configuration: loading, validation with positioned errors, and `init`.
//!
//! A workspace is a folder with `config/` (YAML files) and `resources/` (scripts,
//! skills, command tools). [`load`] reads and checks all of it, reporting every
//! problem as `file:line:column: message`; [`init`] writes a working demo.

mod builtins;
mod error;
mod init;
mod inline_code;
mod load;
mod parse;
mod schema;
mod secrets;
mod skills;
mod tools;
mod types;
mod validate;
mod yaml;

pub use builtins::{builtin_named, builtin_tool};
pub use error::{ConfigError, ConfigErrors, InitError, did_you_mean};
pub use init::{Template, init, init_template};
pub use load::{
    AGENTS_DIR, MCP_FILE, MODELS_FILE, SKILLS_DIR, STORES_FILE, TOOLS_FILE, WORK_DIR,
    WORKSPACE_FILE, load,
};
pub use schema::{CheckedTool, compile_schema, validate_arguments};
pub use skills::Skill;
pub use types::*;
pub use yaml::from_yaml;

/// Why `endpoint` is no OTLP/HTTP base URL: not `http://` or `https://` with a
/// host, or carrying credentials (they belong in `telemetry.headers_env`).
pub fn check_otlp_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or(
            "must start with http:// or https:// (OTLP over HTTP, e.g. http://localhost:4318)",
        )?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "must not carry credentials: send them in a header from `telemetry.headers_env`".into(),
        );
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err("has no host".into());
    }
    if authority.chars().any(|c| c.is_whitespace()) {
        return Err("must not contain spaces".into());
    }
    Ok(())
}

use std::path::PathBuf;

impl Workspace {
    /// Every concurrency limit the configuration declares (resources, tools' and
    /// agents' `max_concurrent`), by key.
    pub fn declared_limits(&self) -> Vec<harness_core::Limit> {
        let mut all: Vec<harness_core::Limit> = self
            .settings
            .resources
            .iter()
            .map(|(name, cap)| harness_core::Limit::resource(name, *cap))
            .chain(self.tools.iter().filter_map(|(name, t)| {
                t.max_concurrent.map(|n| harness_core::Limit::tool(name, n))
            }))
            .chain(self.agents.iter().filter_map(|(name, a)| {
                a.max_concurrent
                    .map(|n| harness_core::Limit::agent(name, n))
            }))
            .collect();
        all.sort();
        all
    }

    /// The store folder (`stores.yaml` `sqlite.path`, resolved against the root).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join(&self.stores.sqlite.path)
    }

    /// `work/`: the folder every request's work folder is in.
    pub fn work_root(&self) -> PathBuf {
        self.root.join(WORK_DIR)
    }

    /// The folder a request of `session` run by `agent` gives its file tools
    /// (confined to it) and command tools (started in it), per `work_folder`.
    /// Refuses a name that is not one plain path component (`.`, `..`, a `/`).
    pub fn work_dir(&self, session: &str, agent: &str) -> Result<PathBuf, String> {
        let plain = |kind: &str, name: &str| {
            let mut parts = std::path::Path::new(name).components();
            match (parts.next(), parts.next()) {
                (Some(std::path::Component::Normal(_)), None) => Ok(()),
                _ => Err(format!(
                    "{kind} `{name}` cannot name a work folder (work_folder: {} in {WORKSPACE_FILE})",
                    self.settings.work_folder.name()
                )),
            }
        };
        Ok(match self.settings.work_folder {
            WorkFolder::Session => {
                plain("session", session)?;
                self.work_root().join(session)
            }
            WorkFolder::Agent => {
                plain("agent", agent)?;
                self.work_root().join("agents").join(agent)
            }
            WorkFolder::Workspace => self.work_root(),
        })
    }
}
