//! `init`: writes a working demo workspace (scripted model, two agents, a
//! command tool that needs approval, a skill) from the files in `templates/`.

use crate::error::InitError;
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

/// Writes the demo workspace into `dir` (created if needed) and returns the
/// paths written. Refuses when `dir/config` exists, unless `force`.
pub fn init(dir: &Path, force: bool) -> Result<Vec<PathBuf>, InitError> {
    if dir.join("config").exists() && !force {
        return Err(InitError::AlreadyExists(dir.to_path_buf()));
    }
    FILES
        .iter()
        .map(|(rel, contents, executable)| {
            let path = dir.join(rel);
            write(&path, contents, *executable).map_err(|source| InitError::Io {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
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
