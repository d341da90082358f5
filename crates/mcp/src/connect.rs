//! Connecting to a server: a child process over stdio or streamable HTTP, then
//! the MCP handshake and the tool listing.

use crate::server::{Listed, Server};
use harness_providers::tools::{PASSED_THROUGH, die_with_worker, expand_env};
use process_wrap::tokio::{CommandWrap, ProcessGroup};
use rmcp::ServiceExt;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use std::collections::HashMap;
use std::process::Stdio;

/// A connected server and the tools it listed.
pub(crate) struct Connection {
    pub service: RunningService<RoleClient, ()>,
    pub tools: Vec<Listed>,
}

pub(crate) async fn connect(server: &Server) -> Result<Connection, String> {
    let service = match (&server.config.command, &server.config.url) {
        (Some(program), _) => stdio(server, program).await?,
        (None, Some(url)) => http(server, url).await?,
        (None, None) => return Err("neither `command` nor `url` is set".to_string()),
    };
    let tools = service
        .list_all_tools()
        .await
        .map_err(|e| format!("listing its tools failed: {e}"))?;
    let tools = tools
        .into_iter()
        .map(|t| Listed {
            name: t.name.to_string(),
            description: t.description.map(|d| d.to_string()).unwrap_or_default(),
            input_schema: serde_json::Value::Object((*t.input_schema).clone()),
        })
        .collect();
    Ok(Connection { service, tools })
}

/// The program in its own process group (killed as a group), in the workspace
/// folder, with a cleared environment plus the passed-through variables and its
/// `env`; stderr is kept (its tail) for the health check.
async fn stdio(server: &Server, program: &str) -> Result<RunningService<RoleClient, ()>, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&server.config.args)
        .current_dir(&server.root)
        .env_clear()
        .kill_on_drop(true);
    for key in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    for (key, value) in &server.config.env {
        cmd.env(key, expand_env(value));
    }
    die_with_worker(&mut cmd);
    let mut wrapped = CommandWrap::from(cmd);
    wrapped.wrap(ProcessGroup::leader());
    server.stderr.clear();
    let (transport, stderr) = TokioChildProcess::builder(wrapped)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    if let Some(stderr) = stderr {
        tokio::spawn(server.stderr.clone().fill(stderr));
    }
    match ().serve(transport).await {
        Ok(service) => Ok(service),
        Err(e) => {
            // Let the tail catch what it printed before it died.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Err(format!("the MCP handshake with `{program}` failed: {e}"))
        }
    }
}

async fn http(server: &Server, url: &str) -> Result<RunningService<RoleClient, ()>, String> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    harness_providers::install_crypto();
    let mut headers = HashMap::new();
    for (name, value) in &server.config.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header `{name}`: {e}"))?;
        let value = reqwest::header::HeaderValue::from_str(&expand_env(value))
            .map_err(|_| format!("header `{name}` has a value that is not a valid header"))?;
        headers.insert(name, value);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(server.config.startup_timeout)
        .user_agent(concat!("agent-harness/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
    let transport = StreamableHttpClientTransport::with_client(client, config);
    ().serve(transport)
        .await
        .map_err(|e| format!("connecting to {url} failed: {e}"))
}
