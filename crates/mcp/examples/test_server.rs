//! A small MCP server over stdio, written with rmcp's server side, for the tests
//! and the benchmark. Tools: `echo {text}`, `add {a, b}`, `fail {}` (a tool
//! error), `slow {ms}` (appends `cancelled <request id>` to `$TEST_SERVER_LOG` when
//! told to cancel), `count {}` (appends a line to `$TEST_SERVER_LOG`), `crash {}`
//! (the process exits). With `TEST_SERVER_FAIL_START` set, it prints to stderr and
//! exits before the handshake. It prints `$TEST_SERVER_STDERR` to stderr at start.

use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServerHandler, ServiceExt};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;

#[derive(Clone)]
struct TestServer;

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let Value::Object(schema) = schema else {
        unreachable!("schemas are objects")
    };
    Tool::new(name, description, Arc::new(schema))
}

fn log(line: &str) {
    if let Ok(path) = std::env::var("TEST_SERVER_LOG") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("log file");
        writeln!(f, "{line}").expect("log write");
    }
}

fn text(t: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(t)]).into()
}

impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            tool(
                "echo",
                "Returns its text",
                json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
            ),
            tool(
                "add",
                "Adds two integers",
                json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}),
            ),
            tool("fail", "Always fails", json!({"type": "object"})),
            tool(
                "slow",
                "Waits ms milliseconds",
                json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]}),
            ),
            tool(
                "count",
                "Counts its calls in the log",
                json!({"type": "object"}),
            ),
            tool("crash", "Exits the server", json!({"type": "object"})),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        match request.name.as_ref() {
            "echo" => Ok(text(
                args.get("text").and_then(Value::as_str).unwrap_or_default(),
            )),
            "add" => {
                let n = |k: &str| args.get(k).and_then(Value::as_i64).unwrap_or_default();
                Ok(text((n("a") + n("b")).to_string()))
            }
            "fail" => {
                Ok(CallToolResult::error(vec![ContentBlock::text("it failed on purpose")]).into())
            }
            "slow" => {
                let ms = args.get("ms").and_then(Value::as_u64).unwrap_or_default();
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_millis(ms)) => Ok(text("done")),
                    () = context.ct.cancelled() => {
                        log(&format!("cancelled {}", context.id));
                        Err(ErrorData::internal_error("cancelled", None))
                    }
                }
            }
            "count" => {
                log("count");
                Ok(text("counted"))
            }
            "crash" => {
                eprintln!("crashing on request");
                std::process::exit(7)
            }
            other => Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Ok(line) = std::env::var("TEST_SERVER_STDERR") {
        eprintln!("{line}");
    }
    if std::env::var_os("TEST_SERVER_FAIL_START").is_some() {
        eprintln!("boom: cannot open the database");
        std::process::exit(3);
    }
    let service = TestServer
        .serve(rmcp::transport::stdio())
        .await
        .expect("serve");
    let _ = service.waiting().await;
}
