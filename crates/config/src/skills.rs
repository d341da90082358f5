//! Skills: `resources/skills/NAME/SKILL.md`, Markdown with YAML front matter
//! (`name`, `description`). An agent that lists a skill is told its description in
//! its system prompt and loads the whole file with the built-in `load_skill` tool.

use crate::error::ConfigError;
use crate::load::SKILLS_DIR;
use crate::yaml::from_yaml;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One skill of the workspace.
#[derive(Clone, Debug, PartialEq)]
pub struct Skill {
    pub name: String,
    pub description: String,
    /// `SKILL.md`, relative to the workspace root.
    pub path: PathBuf,
}

/// The front matter's keys; others (e.g. `license`, `metadata`) are allowed and ignored.
#[derive(Deserialize)]
struct FrontMatter {
    name: String,
    description: String,
}

/// Every skill under `resources/skills/` (a folder holding `SKILL.md`), by name;
/// each file whose front matter is missing or wrong is an error at its line. Also
/// every folder's name, read or not (an agent listing a broken skill is not told
/// the skill is unknown as well).
pub(crate) fn read_skills(
    root: &Path,
    errors: &mut Vec<ConfigError>,
) -> (BTreeMap<String, Skill>, Vec<String>) {
    let mut skills = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(root.join(SKILLS_DIR)) else {
        return (skills, vec![]);
    };
    let mut folders: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("SKILL.md").is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    folders.sort();
    for folder in folders.clone() {
        let rel = Path::new(SKILLS_DIR).join(&folder).join("SKILL.md");
        match read_skill(root, &rel, &folder) {
            Ok(skill) => {
                skills.insert(folder, skill);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    (skills, folders)
}

fn read_skill(root: &Path, rel: &Path, folder: &str) -> Result<Skill, Vec<ConfigError>> {
    let text = std::fs::read_to_string(root.join(rel))
        .map_err(|e| vec![ConfigError::file(rel, format!("cannot read: {e}"))])?;
    let Some((yaml, offset)) = front_matter(&text) else {
        return Err(vec![ConfigError::at(
            rel,
            Some((1, 1)),
            "a skill starts with front matter between `---` lines, with `name` and `description`",
        )]);
    };
    let fm: FrontMatter = from_yaml(yaml, rel).map_err(|e| {
        e.0.into_iter()
            .map(|mut e| {
                e.line = e.line.map(|l| l + offset);
                e
            })
            .collect::<Vec<_>>()
    })?;
    let line_of = |key: &str| {
        yaml.lines()
            .position(|l| l.starts_with(&format!("{key}:")))
            .map(|i| (i + 1 + offset, key.len() + 3))
    };
    let mut errors = vec![];
    if fm.name != folder {
        let msg = format!(
            "skill name `{}` does not match its folder (expected `{folder}`)",
            fm.name
        );
        errors.push(ConfigError::at(rel, line_of("name"), msg));
    }
    if fm.description.trim().is_empty() {
        let msg = "`description` must not be empty: it is what agents are told about the skill";
        errors.push(ConfigError::at(rel, line_of("description"), msg));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Skill {
        name: fm.name,
        description: fm.description.trim().to_string(),
        path: rel.to_path_buf(),
    })
}

/// The YAML between the opening `---` line and the next `---` line, and how many
/// lines precede it in the file.
fn front_matter(text: &str) -> Option<(&str, usize)> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut at = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&rest[..at], 1));
        }
        at += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::front_matter;

    #[test]
    fn front_matter_is_between_the_first_two_rules() {
        assert_eq!(
            front_matter("---\nname: a\n---\nbody\n---\n"),
            Some(("name: a\n", 1))
        );
        assert_eq!(front_matter("name: a\n---\n"), None);
        assert_eq!(front_matter("---\nname: a\n"), None);
    }
}
