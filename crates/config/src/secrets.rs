//! The secrets a workspace references: which environment variables hold them,
//! and which were written into the configuration literally. The engine reads the
//! variables' values from its own environment and redacts them from every record.

use crate::types::{PostgresStoreConfig, SqliteStoreConfig, StoresFile, Workspace};
use std::collections::{BTreeMap, BTreeSet};

impl Workspace {
    /// Names of the environment variables whose values are secrets of this workspace:
    /// every model's `api_key_env`, PostgreSQL's `url_env`, and every `${VAR}` in the
    /// `env:` values of command tools and MCP servers and MCP `headers:` (a variable passed through to a program is treated as a
    /// secret whatever its name: `DATABASE_URL`, `DSN` and the like hold credentials).
    pub fn secret_env_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        names.extend(self.models.values().filter_map(|m| m.api_key_env.clone()));
        for env in self.env_maps() {
            for value in env.values() {
                names.extend(env_refs(value).into_iter().map(String::from));
            }
        }
        names.extend(store_secret_env_names(&self.stores));
        // OTLP export headers (an `authorization` token, an API key).
        names.extend(self.settings.telemetry.headers_env.values().cloned());
        names
    }

    /// Secret values written literally in the configuration: `env:` entries of command
    /// tools and MCP servers whose key names a secret (`SMTP_PASSWORD: hunter2`) and
    /// whose value references no variable.
    pub fn literal_secrets(&self) -> Vec<String> {
        let mut values = Vec::new();
        for env in self.env_maps() {
            for (key, value) in env {
                if harness_core::is_secret_key(key) && env_refs(value).is_empty() {
                    values.push(value.clone());
                }
            }
        }
        values
    }

    fn env_maps(&self) -> impl Iterator<Item = &BTreeMap<String, String>> {
        let tools = self.tools.values().map(|t| &t.env);
        let mcp = self.mcp.servers.values();
        tools
            .chain(mcp.clone().map(|s| &s.env))
            .chain(mcp.map(|s| &s.headers))
    }
}

/// Variables holding store credentials: PostgreSQL's URL (with its password). The
/// destructuring makes a new store setting fail to compile here until it is decided
/// whether it names such a variable.
fn store_secret_env_names(stores: &StoresFile) -> Vec<String> {
    let StoresFile {
        backend: _,
        sqlite,
        postgres,
    } = stores;
    let SqliteStoreConfig {
        path: _,
        synchronous: _,
    } = sqlite;
    match postgres {
        Some(PostgresStoreConfig {
            url_env,
            pool_size: _,
            schema: _,
            lease_secs: _,
        }) => vec![url_env.clone()],
        None => Vec::new(),
    }
}

/// The `NAME`s of `${NAME}` in `value`, as command tools expand them (letters,
/// digits, `_`, `-`).
pub(crate) fn env_refs(value: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                let ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if ok {
                    names.push(name);
                    rest = &after[end + 1..];
                } else {
                    rest = after;
                }
            }
            None => break,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::env_refs;

    #[test]
    fn finds_variable_references() {
        assert_eq!(env_refs("${A}"), vec!["A"]);
        assert_eq!(
            env_refs("Bearer ${API-TOKEN} and ${B_2}"),
            vec!["API-TOKEN", "B_2"]
        );
        assert_eq!(env_refs("$A {B} ${} ${not a name} ${C"), Vec::<&str>::new());
        assert_eq!(env_refs("${x ${Y}"), vec!["Y"]);
    }
}
