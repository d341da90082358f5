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
    AGENTS_DIR, MCP_FILE, MODELS_FILE, SKILLS_DIR, STORES_FILE, TOOLS_FILE, WORKSPACE_FILE, load,
};
pub use schema::{compile_schema, validate_arguments};
pub use skills::Skill;
pub use types::*;
pub use yaml::from_yaml;

use std::path::PathBuf;

impl Workspace {
    /// The store folder (`stores.yaml` `sqlite.path`, resolved against the root).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join(&self.stores.sqlite.path)
    }

    /// The folder file tools work in (`work/`).
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }
}
