//! Who may call the API: tokens from `config/server.yaml`, each with a name and a role.
//!
//! ```yaml
//! tokens:
//!   - name: ci
//!     role: operator
//!     sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!   - name: dashboard
//!     role: viewer
//!     env: DASHBOARD_TOKEN     # the token itself, read from this variable at start
//! ```
//!
//! Only SHA-256 hashes of tokens are kept in memory; a presented bearer token is
//! hashed and compared with each. Without tokens the server runs open (every caller is
//! an admin named `anonymous`), which `serve` allows only on a loopback address.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The server's configuration file, relative to the workspace.
pub const SERVER_FILE: &str = "config/server.yaml";

/// What a token may do; each role can do everything the ones before it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads records, events and health.
    Viewer,
    /// Also admits requests, resolves approvals and cancels requests.
    Operator,
    /// Also runs maintenance.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The caller of one API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (recorded as who resolved an approval or cancelled a request).
    pub name: String,
    pub role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    role: Role,
    /// The token's SHA-256, in hex.
    #[serde(default)]
    sha256: Option<String>,
    /// A variable holding the token itself.
    #[serde(default)]
    env: Option<String>,
}

/// The tokens the server accepts.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<(String, Role, [u8; 32])>,
}

#[derive(Debug, thiserror::Error)]
#[error("{SERVER_FILE}: {0}")]
pub struct AuthConfigError(String);

impl Tokens {
    /// No tokens: the server runs open.
    pub fn open() -> Self {
        Self::default()
    }

    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a token (tests, and the file loader).
    pub fn with_token(mut self, name: &str, role: Role, token: &str) -> Self {
        self.entries.push((
            name.to_string(),
            role,
            Sha256::digest(token.as_bytes()).into(),
        ));
        self
    }

    /// Reads `config/server.yaml` under `root` (no file: no tokens). `env` reads a
    /// variable (this process's environment in `serve`).
    pub fn load(
        root: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Tokens, AuthConfigError> {
        let path = root.join(SERVER_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tokens::open()),
            Err(e) => return Err(AuthConfigError(format!("cannot read: {e}"))),
        };
        let file: ServerFile =
            serde_saphyr::from_str(&text).map_err(|e| AuthConfigError(e.to_string()))?;
        let mut tokens = Tokens::open();
        for t in file.tokens {
            if t.name.trim().is_empty() {
                return Err(AuthConfigError("a token has an empty `name`".into()));
            }
            if tokens.entries.iter().any(|(n, ..)| *n == t.name) {
                return Err(AuthConfigError(format!(
                    "two tokens are named `{}`: names must be unique (they are recorded as who acted)",
                    t.name
                )));
            }
            let hash: [u8; 32] = match (t.sha256, t.env) {
                (Some(h), None) => hex::decode(h.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        AuthConfigError(format!(
                            "token `{}`: `sha256` must be 64 hex digits (`printf %s TOKEN | sha256sum`)",
                            t.name
                        ))
                    })?,
                (None, Some(var)) => {
                    let v = env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        AuthConfigError(format!(
                            "token `{}` is read from the environment variable {var}, which is not set",
                            t.name
                        ))
                    })?;
                    Sha256::digest(v.as_bytes()).into()
                }
                _ => {
                    return Err(AuthConfigError(format!(
                        "token `{}` needs exactly one of `sha256` (the token's hash) or `env` (a variable holding it)",
                        t.name
                    )));
                }
            };
            tokens.entries.push((t.name, t.role, hash));
        }
        Ok(tokens)
    }

    /// The principal a bearer token names, if any.
    pub fn check(&self, token: &str) -> Option<Principal> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare every entry in full, so the time taken does not tell which matched.
        let mut found = None;
        for (name, role, hash) in &self.entries {
            let same = hash
                .iter()
                .zip(h.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if same && found.is_none() {
                found = Some(Principal {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Tokens, AuthConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join(SERVER_FILE), yaml).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tokens::load(dir.path(), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn tokens_load_from_hashes_and_variables() {
        // sha256("hello")
        let t = load(
            "tokens:\n  - name: a\n    role: viewer\n    sha256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n  - name: b\n    role: admin\n    env: TOK\n",
            &[("TOK", "from-env")],
        )
        .unwrap();
        assert_eq!(t.check("hello").unwrap().name, "a");
        assert_eq!(t.check("from-env").unwrap().role, Role::Admin);
        assert!(t.check("other").is_none());
        assert!(!t.is_open());
    }

    #[test]
    fn a_missing_file_is_open_and_bad_entries_are_refused_with_why() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Tokens::load(dir.path(), |_| None).unwrap().is_open());
        for (yaml, says) in [
            ("tokens:\n  - name: a\n    role: viewer\n", "exactly one of"),
            (
                "tokens:\n  - name: a\n    role: viewer\n    sha256: zz\n",
                "64 hex",
            ),
            (
                "tokens:\n  - name: a\n    role: viewer\n    env: NOPE\n",
                "NOPE",
            ),
            ("tokens:\n  - name: a\n    role: king\n    env: T\n", "king"),
            (
                "tokens:\n  - {name: a, role: viewer, env: T}\n  - {name: a, role: admin, env: T}\n",
                "two tokens",
            ),
        ] {
            let e = load(yaml, &[("T", "x")]).unwrap_err().to_string();
            assert!(e.contains(says), "{e:?} should say {says:?}");
            assert!(e.starts_with(SERVER_FILE), "{e}");
        }
    }
}
