//! One MCP server: its supervisor (connect, list, wait, reconnect with backoff),
//! its state, and calls to it.

use crate::connect::{Connection, connect};
use crate::output::to_output;
use crate::tail::Tail;
use harness_config::McpServer;
use harness_core::Redactor;
use harness_providers::ToolOutput;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RoleClient};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The first wait before restarting a server; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A server that stayed up this long starts over from [`FIRST_BACKOFF`].
const STABLE: Duration = Duration::from_secs(60);

/// Where a server stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Connecting and listing its tools.
    Starting,
    /// Connected; its tools are listed.
    Up,
    /// Not connected: it failed to start or ended; a restart is scheduled.
    Down,
    /// Stopped with the worker.
    Stopped,
}

/// A server's state as the health check reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    pub state: ServerState,
    /// Tools listed at its last start.
    pub tools: usize,
    /// Times it was restarted after failing or ending.
    pub restarts: u32,
    /// Why it is down (redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last lines it wrote to stderr (stdio servers; redacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stderr_tail: Vec<String>,
    /// Seconds until the next restart, when down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<u64>,
}

/// A tool from a server's listing.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

struct State {
    state: ServerState,
    peer: Option<Peer<RoleClient>>,
    tools: Vec<Listed>,
    restarts: u32,
    error: Option<String>,
    retry_at: Option<Instant>,
    /// Attempts finished (up or failed); the first start waits for 1.
    attempts: u64,
}

pub(crate) struct Server {
    pub name: String,
    pub config: McpServer,
    pub root: PathBuf,
    pub redactor: Redactor,
    pub stderr: Arc<Tail>,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    status_file: Arc<StatusFile>,
}

impl Server {
    pub fn new(
        name: String,
        config: McpServer,
        root: PathBuf,
        redactor: Redactor,
        status_file: Arc<StatusFile>,
    ) -> Self {
        Self {
            name,
            config,
            root,
            redactor,
            stderr: Arc::new(Tail::default()),
            state: Mutex::new(State {
                state: ServerState::Starting,
                peer: None,
                tools: vec![],
                restarts: 0,
                error: None,
                retry_at: None,
                attempts: 0,
            }),
            changed: watch::channel(0).0,
            status_file,
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        {
            let mut st = self.state.lock().expect("mcp server state");
            f(&mut st);
        }
        self.changed.send_modify(|n| *n += 1);
        self.status_file.write(self);
    }

    /// Waits until the first attempt to start has ended (up or failed).
    pub async fn first_attempt(&self) {
        let mut rx = self.changed.subscribe();
        let _ = rx
            .wait_for(|_| {
                let st = self.state.lock().expect("mcp server state");
                st.attempts > 0 || st.state == ServerState::Stopped
            })
            .await;
    }

    /// Waits until the supervisor has stopped the server.
    pub async fn stopped(&self) {
        let mut rx = self.changed.subscribe();
        let _ = rx
            .wait_for(|_| {
                self.state.lock().expect("mcp server state").state == ServerState::Stopped
            })
            .await;
    }

    pub fn status(&self) -> ServerStatus {
        let st = self.state.lock().expect("mcp server state");
        ServerStatus {
            name: self.name.clone(),
            state: st.state,
            tools: st.tools.len(),
            restarts: st.restarts,
            error: st.error.clone(),
            stderr_tail: if st.state == ServerState::Up {
                vec![]
            } else {
                self.stderr.lines().iter().map(|l| self.redact(l)).collect()
            },
            retry_in_secs: st
                .retry_at
                .filter(|_| st.state == ServerState::Down)
                .map(|at| {
                    at.saturating_duration_since(Instant::now())
                        .as_secs_f64()
                        .ceil() as u64
                }),
        }
    }

    pub fn listed(&self, tool: &str) -> Option<Listed> {
        let st = self.state.lock().expect("mcp server state");
        st.tools.iter().find(|t| t.name == tool).cloned()
    }

    pub fn all_listed(&self) -> Vec<Listed> {
        self.state.lock().expect("mcp server state").tools.clone()
    }

    fn redact(&self, text: &str) -> String {
        self.redactor.redact_str(text).into_owned()
    }

    /// Why calls fail while the server is not up.
    fn down_message(&self) -> String {
        let s = self.status();
        let mut msg = match s.state {
            ServerState::Starting => format!("MCP server `{}` is starting", self.name),
            ServerState::Stopped => format!("MCP server `{}` is stopped", self.name),
            _ => format!(
                "MCP server `{}` is not running{}",
                self.name,
                s.error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
        };
        if let Some(secs) = s.retry_in_secs {
            msg.push_str(&format!(" (next restart in {secs}s)"));
        }
        msg
    }

    pub async fn call(
        &self,
        tool: &str,
        arguments: &serde_json::Value,
        cancel: &CancellationToken,
    ) -> ToolOutput {
        let peer = self.state.lock().expect("mcp server state").peer.clone();
        let Some(peer) = peer else {
            return ToolOutput::error(self.down_message());
        };
        let args = match arguments {
            serde_json::Value::Object(m) => m.clone(),
            serde_json::Value::Null => Default::default(),
            other => {
                return ToolOutput::error(format!(
                    "arguments of an MCP tool must be a JSON object, got {other}"
                ));
            }
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        // Dropping the call (cancel, timeout) sends `notifications/cancelled`.
        let called = peer.call_tool(params);
        let result = tokio::select! {
            r = tokio::time::timeout(self.config.timeout, called) => r,
            () = cancel.cancelled() => {
                return ToolOutput::error(format!("call to `{}.{tool}` cancelled", self.name));
            }
        };
        match result {
            Ok(Ok(r)) => to_output(tool, r),
            Ok(Err(e)) => ToolOutput::error(self.redact(&format!(
                "MCP server `{}` failed the call to `{tool}`: {e}",
                self.name
            ))),
            Err(_) => ToolOutput::error(format!(
                "`{}.{tool}` timed out after {}s (the server was told to cancel it)",
                self.name,
                self.config.timeout.as_secs()
            )),
        }
    }
}

/// Keeps `server` connected until `stop`: connect and list, wait for the end,
/// then reconnect after a doubling backoff.
pub(crate) async fn supervise(server: Arc<Server>, stop: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        server.update(|st| {
            st.state = ServerState::Starting;
            st.retry_at = None;
        });
        let attempt = tokio::select! {
            r = tokio::time::timeout(server.config.startup_timeout, connect(&server)) => r,
            () = stop.cancelled() => break,
        };
        let error = match attempt {
            Ok(Ok(conn)) => {
                let since = Instant::now();
                let ended = run_connection(&server, conn, &stop).await;
                match ended {
                    None => break,
                    Some(why) => {
                        if since.elapsed() >= STABLE {
                            backoff = FIRST_BACKOFF;
                        }
                        why
                    }
                }
            }
            Ok(Err(e)) => e,
            Err(_) => format!(
                "did not start within {}s (startup_timeout)",
                server.config.startup_timeout.as_secs()
            ),
        };
        let error = server.redact(&error);
        tracing::warn!(server = %server.name, error = %error, retry_in = ?backoff, "MCP server down");
        server.update(|st| {
            st.state = ServerState::Down;
            st.peer = None;
            st.error = Some(error);
            st.retry_at = Some(Instant::now() + backoff);
            st.attempts += 1;
        });
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        server.update(|st| st.restarts += 1);
    }
    server.update(|st| {
        st.state = ServerState::Stopped;
        st.peer = None;
        st.retry_at = None;
    });
}

/// Serves calls through `conn` until it ends (Some(why)) or `stop` (None).
async fn run_connection(
    server: &Server,
    conn: Connection,
    stop: &CancellationToken,
) -> Option<String> {
    let Connection { service, tools } = conn;
    tracing::info!(server = %server.name, tools = tools.len(), "MCP server up");
    server.update(|st| {
        st.state = ServerState::Up;
        st.peer = Some(service.peer().clone());
        st.tools = tools;
        st.error = None;
        st.attempts += 1;
    });
    let token = service.cancellation_token();
    let waiting = service.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        quit = &mut waiting => {
            let why = match quit {
                Ok(rmcp::service::QuitReason::Closed) => "the connection closed (the server exited)".to_string(),
                Ok(rmcp::service::QuitReason::Cancelled) => "the connection was cancelled".to_string(),
                Ok(rmcp::service::QuitReason::JoinError(e)) | Err(e) => format!("the client task failed: {e}"),
                Ok(other) => format!("the connection ended ({other:?})"),
            };
            Some(why)
        }
        () = stop.cancelled() => {
            token.cancel();
            // The transport's drop closes the server's input and kills it.
            let _ = waiting.await;
            None
        }
    }
}

/// `<store>/mcp-servers.json`: every server's state, rewritten at each change
/// by the worker, so health views in other processes see it.
pub(crate) struct StatusFile {
    path: Option<PathBuf>,
    servers: Mutex<std::collections::BTreeMap<String, ServerStatus>>,
}

/// The status file's content.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusFileBody {
    /// The worker process that wrote it.
    pub pid: u32,
    pub servers: Vec<ServerStatus>,
}

impl StatusFile {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            servers: Mutex::default(),
        }
    }

    fn write(&self, server: &Server) {
        let Some(path) = &self.path else { return };
        let mut all = self.servers.lock().expect("mcp status file");
        all.insert(server.name.clone(), server.status());
        let body = StatusFileBody {
            pid: std::process::id(),
            servers: all.values().cloned().collect(),
        };
        let Ok(bytes) = serde_json::to_vec_pretty(&body) else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::debug!(error = %e, "could not write the MCP status file");
        }
    }
}
