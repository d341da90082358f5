//! `init`: writes a working demo workspace (scripted model, two agents, a
//! command tool that needs approval, a skill) from the files in `templates/`,
//! or the same workspace on a real model ([`Template`]).

use crate::error::InitError;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// (path relative to the workspace, contents, executable)
const FILES: &[(&str, &str, bool)] = &[
    (
        "config/workspace.yaml",
        include_str!("../templates/config/workspace.yaml"),
        false,
    ),
    (
        "config/models.yaml",
        include_str!("../templates/config/models.yaml"),
        false,
    ),
    (
        "config/agents/assistant.yaml",
        include_str!("../templates/config/agents/assistant.yaml"),
        false,
    ),
    (
        "config/agents/researcher.yaml",
        include_str!("../templates/config/agents/researcher.yaml"),
        false,
    ),
    (
        "config/tools.yaml",
        include_str!("../templates/config/tools.yaml"),
        false,
    ),
    (
        "config/mcp.yaml",
        include_str!("../templates/config/mcp.yaml"),
        false,
    ),
    (
        "config/stores.yaml",
        include_str!("../templates/config/stores.yaml"),
        false,
    ),
    (
        "resources/tools/send_mail.sh",
        include_str!("../templates/resources/tools/send_mail.sh"),
        true,
    ),
    (
        "resources/tools/word_count.sh",
        include_str!("../templates/resources/tools/word_count.sh"),
        true,
    ),
    (
        "resources/scripts/demo.yaml",
        include_str!("../templates/resources/scripts/demo.yaml"),
        false,
    ),
    (
        "resources/skills/release-notes/SKILL.md",
        include_str!("../templates/resources/skills/release-notes/SKILL.md"),
        false,
    ),
    (".gitignore", include_str!("../templates/gitignore"), false),
];

/// Which workspace `init` writes: the offline demo, or the same agents, tools and
/// skill on a real model (`config/models.yaml` from `templates/providers/`, the
/// agents' `model:` set to it; the scripted model stays defined).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Template {
    /// The embedded `scripted` model: no network, no key.
    #[default]
    Demo,
    /// OpenAI's Chat Completions API (`OPENAI_API_KEY`).
    Openai,
    /// Anthropic's Messages API (`ANTHROPIC_API_KEY`).
    Anthropic,
    /// A model served locally by Ollama (or another OpenAI-compatible server).
    Ollama,
}

impl Template {
    pub const ALL: [Template; 4] = [
        Template::Demo,
        Template::Openai,
        Template::Anthropic,
        Template::Ollama,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Template::Demo => "demo",
            Template::Openai => "openai",
            Template::Anthropic => "anthropic",
            Template::Ollama => "ollama",
        }
    }

    /// The model the agents use (its name in `config/models.yaml`).
    pub fn model(self) -> &'static str {
        match self {
            Template::Demo => "scripted",
            Template::Openai => "gpt",
            Template::Anthropic => "claude",
            Template::Ollama => "local",
        }
    }

    /// The environment variable the model's key is read from, if it takes one.
    pub fn key_env(self) -> Option<&'static str> {
        match self {
            Template::Openai => Some("OPENAI_API_KEY"),
            Template::Anthropic => Some("ANTHROPIC_API_KEY"),
            Template::Demo | Template::Ollama => None,
        }
    }

    fn models_file(self) -> Option<&'static str> {
        match self {
            Template::Demo => None,
            Template::Openai => Some(include_str!("../templates/providers/openai.yaml")),
            Template::Anthropic => Some(include_str!("../templates/providers/anthropic.yaml")),
            Template::Ollama => Some(include_str!("../templates/providers/ollama.yaml")),
        }
    }
}

impl std::str::FromStr for Template {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Template::ALL.iter().map(|t| t.name()).collect();
                format!("unknown template `{s}`; one of: {}", names.join(", "))
            })
    }
}

/// Writes the demo workspace into `dir` (created if needed) and returns the
/// paths written. Refuses when `dir/config` exists, unless `force`.
pub fn init(dir: &Path, force: bool) -> Result<Vec<PathBuf>, InitError> {
    init_template(dir, Template::Demo, force)
}

/// Writes the workspace of `template` into `dir`, as [`init`] does.
pub fn init_template(
    dir: &Path,
    template: Template,
    force: bool,
) -> Result<Vec<PathBuf>, InitError> {
    if dir.join("config").exists() && !force {
        return Err(InitError::AlreadyExists(dir.to_path_buf()));
    }
    FILES
        .iter()
        .map(|(rel, contents, executable)| {
            let path = dir.join(rel);
            let contents = contents_for(template, rel, contents);
            write(&path, &contents, *executable).map_err(|source| InitError::Io {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}

/// A template file as `template` has it.
fn contents_for<'a>(template: Template, rel: &str, demo: &'a str) -> Cow<'a, str> {
    match template.models_file() {
        Some(models) if rel == "config/models.yaml" => Cow::Borrowed(models),
        Some(_) if rel.starts_with("config/agents/") => Cow::Owned(demo.replace(
            "\nmodel: scripted\n",
            &format!("\nmodel: {}\n", template.model()),
        )),
        _ => Cow::Borrowed(demo),
    }
}

fn write(path: &Path, contents: &str, executable: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents)?;
    if executable {
        make_executable(path)?;
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
