//! The typed workspace configuration. Field names are the YAML keys; every struct
//! rejects unknown keys.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A loaded and validated workspace.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The workspace folder (absolute).
    pub root: PathBuf,
    pub settings: WorkspaceFile,
    /// By model name (`config/models.yaml`).
    pub models: BTreeMap<String, ModelConfig>,
    /// By agent name (`config/agents/*.yaml`, one agent per file).
    pub agents: BTreeMap<String, AgentConfig>,
    /// By tool name: built-in tools are always present; `config/tools.yaml` adds
    /// command tools and may override built-ins' `approval` / `idempotent`.
    pub tools: BTreeMap<String, ToolConfig>,
    pub mcp: McpFile,
    pub stores: StoresFile,
    /// By name: `resources/skills/NAME/SKILL.md`.
    pub skills: BTreeMap<String, crate::Skill>,
}

/// `config/workspace.yaml`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceFile {
    pub name: String,
    /// Which folder under `work/` a request's file and command tools use.
    #[serde(default)]
    pub work_folder: WorkFolder,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub runtime: RuntimeLimits,
    /// Named resources and how many tool calls may hold each at once
    /// (`resources: {prod-db: 1, gpu: 2}`); tools list the ones they `use`.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub resources: BTreeMap<String, u32>,
    /// OpenTelemetry traces exported over OTLP by `serve`; off unless an endpoint is
    /// given (here or in `OTEL_EXPORTER_OTLP_ENDPOINT`).
    #[serde(default, deserialize_with = "empty_as_default")]
    pub telemetry: Telemetry,
}

/// `telemetry:` in `config/workspace.yaml`: where `serve` exports its traces.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans are
    /// POSTed to `<base>/v1/traces`. Unset: `OTEL_EXPORTER_OTLP_ENDPOINT`, and
    /// without it nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// The OTLP protocol: `http/protobuf`, the only one supported.
    pub protocol: OtlpProtocol,
    /// `service.name` of the exported spans (default `agent-harness`).
    pub service_name: Option<String>,
    /// Headers sent with every export, each read from the environment variable
    /// named here (`authorization: OTLP_AUTH`): secrets never sit in the file.
    pub headers_env: BTreeMap<String, String>,
}

impl Telemetry {
    /// The default `service.name`.
    pub const DEFAULT_SERVICE_NAME: &'static str = "agent-harness";

    pub fn service_name(&self) -> &str {
        self.service_name
            .as_deref()
            .unwrap_or(Self::DEFAULT_SERVICE_NAME)
    }
}

/// `telemetry.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeLimits {
    /// Requests executing at once (worker slots).
    pub max_concurrent_requests: usize,
    /// Queued requests admitted before `request` is refused with queue-full.
    pub queue_capacity: usize,
    /// What to do when a session already has an active request.
    pub session_strategy: SessionStrategy,
    #[serde(with = "humantime_serde_compat")]
    pub approval_ttl: Duration,
    pub approval_expiry: ExpiryOutcome,
    /// A running request with no activity for this long is reported stuck.
    #[serde(with = "humantime_serde_compat")]
    pub stuck_after: Duration,
    /// Finished requests older than this are pruned by maintenance.
    #[serde(with = "humantime_serde_compat")]
    pub retention: Duration,
    /// Largest accepted request input, in bytes.
    pub max_input_bytes: usize,
    /// Tool output larger than this becomes an artifact; the event holds a preview.
    pub max_inline_output_bytes: usize,
    /// A non-idempotent tool call interrupted by a crash: fail the request, or ask an
    /// operator (an approval) whether to run it again.
    pub on_interrupted: InterruptedPolicy,
    /// How deep a request tree may go: a root request is depth 0, a child it
    /// delegates to is depth 1.
    pub max_delegation_depth: u32,
    /// How many delegated children one request may start in total.
    pub max_delegation_fanout: u32,
    /// How many times a request may be started (its first start included) when
    /// recovery re-queues it after its worker died; past that it fails, so a request
    /// that crashes its worker cannot loop.
    pub max_attempts: u32,
    /// How long a graceful stop waits for the steps in flight before it cancels them
    /// (`0s`: cancel at once).
    #[serde(with = "humantime_serde_compat")]
    pub stop_timeout: Duration,
    /// Resource limits of every command tool; a tool's own `limits` win key by key.
    #[serde(deserialize_with = "empty_as_default")]
    pub command_limits: CommandLimits,
}

/// `work_folder:` in `config/workspace.yaml`: which folder a request's built-in file
/// tools are confined to and its command tools start in. Delegated requests are in
/// their root's session, so with `session` a whole tree shares one folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkFolder {
    /// `work/<session-id>/`: one folder per session (the default).
    #[default]
    Session,
    /// `work/agents/<agent>/`: one folder per agent, shared by its sessions.
    Agent,
    /// `work/` itself, shared by every request.
    Workspace,
}

impl WorkFolder {
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Agent => "agent",
            Self::Workspace => "workspace",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptedPolicy {
    #[default]
    Fail,
    Ask,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 8,
            queue_capacity: 1000,
            session_strategy: SessionStrategy::Enqueue,
            approval_ttl: Duration::from_secs(24 * 3600),
            approval_expiry: ExpiryOutcome::Reject,
            stuck_after: Duration::from_secs(600),
            retention: Duration::from_secs(30 * 24 * 3600),
            max_input_bytes: 64 * 1024,
            max_inline_output_bytes: 16 * 1024,
            on_interrupted: InterruptedPolicy::Fail,
            max_delegation_depth: 4,
            max_delegation_fanout: 16,
            max_attempts: 3,
            stop_timeout: Duration::from_secs(30),
            command_limits: CommandLimits::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStrategy {
    Enqueue,
    Reject,
}

/// What an expired approval does to its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryOutcome {
    /// The model receives "expired" as the tool result and continues.
    Reject,
    /// The request fails.
    Fail,
}

/// `config/models.yaml`: `models: { NAME: ModelConfig }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsFile {
    #[serde(deserialize_with = "empty_as_default")]
    pub models: BTreeMap<String, ModelConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: Provider,
    /// The provider's model name (e.g. `gpt-4o`); free text for `scripted`.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub model: String,
    #[serde(default)]
    pub base_url: Option<String>,
    /// The *name* of the environment variable holding the API key; never the key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `scripted` only: the script file, relative to the workspace root.
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// Longest answer, in tokens. Anthropic requires one (4096 if unset); OpenAI-compatible
    /// servers use theirs when unset.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    /// `anthropic` only: extended thinking with this many tokens of budget (at least
    /// 1024, and less than `max_tokens`). Thinking blocks are kept with their signatures.
    #[serde(default)]
    pub thinking_budget: Option<u32>,
    /// How long connecting to the provider may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// How long one call may take, from sending it to the end of its stream.
    #[serde(default = "default_request_timeout", with = "humantime_serde_compat")]
    pub request_timeout: Duration,
    /// How long the provider may stay silent: before the first byte of its answer, and
    /// between two pieces of its stream.
    #[serde(default = "default_read_timeout", with = "humantime_serde_compat")]
    pub read_timeout: Duration,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub retry: RetryConfig,
    /// Keep each raw response (the stream as received, redacted) as an artifact of
    /// the request, referenced from its model turn. It is several times the size of
    /// the text; turn it off to save space.
    #[serde(default = "yes")]
    pub keep_raw_responses: bool,
    /// HTTP providers only: a budget shared by every call of every model with the same
    /// `rate_limit.key` in this worker process, and the key a provider's `Retry-After`
    /// blocks. Unset: no budget, and the key is the model's name.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

impl ModelConfig {
    /// The rate limit this model's calls count against: `rate_limit.key`, else the
    /// model's own name.
    pub fn rate_limit_key<'a>(&'a self, model_name: &'a str) -> &'a str {
        self.rate_limit
            .as_ref()
            .and_then(|r| r.key.as_deref())
            .unwrap_or(model_name)
    }
}

/// `rate_limit:` of a model: calls started and tokens used per minute (a sliding
/// window of 60 s), both optional. Models that name the same `key` share one budget
/// (several models on one provider account) and must set the same numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The budget's name; the model's name when unset.
    #[serde(default)]
    pub key: Option<String>,
    /// Calls (each attempt, retries included) started in any 60 s.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Tokens (input + output, as the provider reported them) of the calls that
    /// finished in the last 60 s; a call waits while they reach this.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

/// Retries of a model call that failed in a way that may pass: HTTP 408, 429, 5xx, a
/// connection refused or lost, a timeout. The wait doubles from `initial_backoff` up
/// to `max_backoff`, with jitter; a `Retry-After` from the provider is honoured (a
/// longer one than `max_backoff` ends the retries).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt (0: never retry).
    pub max_retries: u32,
    #[serde(with = "humantime_serde_compat")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(120)
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Scripted,
    Openai,
    Anthropic,
}

/// `config/agents/NAME.yaml`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub name: String,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub description: String,
    /// A key of `models.yaml`.
    pub model: String,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub system_prompt: String,
    /// Tool names (built-in or from `tools.yaml`).
    #[serde(default, deserialize_with = "empty_as_default")]
    pub tools: Vec<String>,
    /// Skills (`resources/skills/NAME/SKILL.md`) this agent is told about; it loads
    /// one with the built-in `load_skill` tool, offered to it when this is not empty.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub skills: Vec<String>,
    /// Agents this one may delegate to (through the built-in `delegate` tool).
    #[serde(default, deserialize_with = "empty_as_default")]
    pub delegates: Vec<String>,
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
    /// How much conversation the model is sent.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub context: ContextBudget,
    /// How many request trees may run this agent at once (a tree that runs it at
    /// several depths counts once). A run past it waits on the queue, without a slot.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Resources (`resources:` in `config/workspace.yaml`) a request of this agent
    /// holds while it runs (not while it waits for an approval or a limit).
    #[serde(default, deserialize_with = "empty_as_default")]
    pub uses: Vec<String>,
}

/// The resources `uses` names (with their capacity from `resources`) and the
/// holder's own limit, sorted by key: the one order every acquisition takes.
fn held_limits(
    uses: &[String],
    own: Option<harness_core::Limit>,
    resources: &BTreeMap<String, u32>,
) -> Vec<harness_core::Limit> {
    let mut limits: Vec<harness_core::Limit> = uses
        .iter()
        .filter_map(|r| {
            resources
                .get(r)
                .map(|cap| harness_core::Limit::resource(r, *cap))
        })
        .chain(own)
        .collect();
    limits.sort();
    limits.dedup_by(|a, b| a.key == b.key);
    limits
}

impl AgentConfig {
    /// The concurrency limits a run of this agent holds, sorted by key (see
    /// [`ToolConfig::concurrency_limits`]).
    pub fn concurrency_limits(
        &self,
        resources: &BTreeMap<String, u32>,
    ) -> Vec<harness_core::Limit> {
        held_limits(
            &self.uses,
            self.max_concurrent
                .map(|n| harness_core::Limit::agent(&self.name, n)),
            resources,
        )
    }
}

fn default_max_steps() -> u32 {
    50
}

/// The most conversation one model call is sent, as estimated tokens (`max_tokens`,
/// counted as 4 bytes each) or bytes (`max_bytes`); set at most one. Past it the oldest
/// turns are left out — earlier requests of the session first, then the request's own
/// oldest steps — and the model is told how many were.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextBudget {
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

impl ContextBudget {
    /// Bytes per estimated token.
    pub const BYTES_PER_TOKEN: u64 = 4;
    /// The budget when none is set: 100,000 estimated tokens.
    pub const DEFAULT_TOKENS: u64 = 100_000;

    /// The budget in bytes.
    pub fn limit_bytes(&self) -> u64 {
        match (self.max_bytes, self.max_tokens) {
            (Some(b), _) => b,
            (None, Some(t)) => t.saturating_mul(Self::BYTES_PER_TOKEN),
            (None, None) => Self::DEFAULT_TOKENS * Self::BYTES_PER_TOKEN,
        }
    }
}

/// `config/tools.yaml`: `tools: { NAME: ToolConfig }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsFile {
    #[serde(default, deserialize_with = "empty_as_default")]
    pub tools: BTreeMap<String, ToolConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    #[serde(default, deserialize_with = "empty_as_default")]
    pub description: String,
    /// Exactly one of `builtin` and `command` is set.
    #[serde(default)]
    pub builtin: Option<Builtin>,
    /// argv; `{name}` in an element is replaced by argument `name` (no shell), and
    /// `{workspace}` by the workspace folder (commands start in the request's work
    /// folder, `work/<session-id>/` by default: see [`WorkFolder`]).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Extra environment for command tools (values are literal; use `${VAR}` to pass one
    /// through). Every `${VAR}` here is a secret: its value is redacted from records.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub env: BTreeMap<String, String>,
    /// The JSON Schema of the arguments (`type: object`; any keyword of drafts 4 to
    /// 2020-12), checked before the tool runs.
    #[serde(default = "empty_object_schema")]
    pub arguments: serde_json::Value,
    #[serde(default = "default_tool_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    #[serde(default)]
    pub approval: ApprovalPolicy,
    /// Safe to run again after a crash interrupted it.
    #[serde(default)]
    pub idempotent: bool,
    /// Accept the risk of `{placeholders}` inside code an interpreter runs (the
    /// script of `sh -c`, `python -c`, `node -e`, `perl -e`, `ruby -e`), where an
    /// argument's value runs as code. Without it, `validate` refuses such a command.
    #[serde(default)]
    pub allow_shell_placeholders: bool,
    /// How many calls of this tool may run at once, across the workspace (and, on
    /// PostgreSQL, across workers). A call past it waits without a worker slot.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Resources (`resources:` in `config/workspace.yaml`) a call holds while it runs.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub uses: Vec<String>,
    /// Command tools: resource limits of the process. After loading, the tool's
    /// own keys over `runtime.command_limits` of `workspace.yaml`.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub limits: CommandLimits,
}

impl ToolConfig {
    /// The concurrency limits a call of tool `name` holds while it runs, in the
    /// one fixed order every acquisition uses (sorted by key). Empty: it runs at once.
    pub fn concurrency_limits(
        &self,
        name: &str,
        resources: &BTreeMap<String, u32>,
    ) -> Vec<harness_core::Limit> {
        held_limits(
            &self.uses,
            self.max_concurrent
                .map(|n| harness_core::Limit::tool(name, n)),
            resources,
        )
    }
}

/// Resource limits of a command tool's process (`limits:` of a tool in
/// `tools.yaml`, `runtime.command_limits:` in `workspace.yaml`); a key left unset
/// is no limit, except `max_output_bytes` ([`CommandLimits::DEFAULT_MAX_OUTPUT_BYTES`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandLimits {
    /// CPU time, in seconds (`RLIMIT_CPU`: SIGXCPU at this, SIGKILL a second later).
    #[serde(default)]
    pub cpu_secs: Option<u64>,
    /// Address space, in MiB (`RLIMIT_AS`): allocations past it fail.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Stdout and stderr together, in bytes: past it the process group is killed.
    #[serde(default)]
    pub max_output_bytes: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    #[serde(default)]
    pub max_open_files: Option<u64>,
}

impl CommandLimits {
    /// The output limit when none is set: 10 MiB.
    pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 10 * 1024 * 1024;

    /// Each key of `self`, or else of `defaults`.
    pub fn or(self, defaults: CommandLimits) -> CommandLimits {
        CommandLimits {
            cpu_secs: self.cpu_secs.or(defaults.cpu_secs),
            memory_mb: self.memory_mb.or(defaults.memory_mb),
            max_output_bytes: self.max_output_bytes.or(defaults.max_output_bytes),
            max_open_files: self.max_open_files.or(defaults.max_open_files),
        }
    }

    /// The output limit in force: `max_output_bytes` or the default.
    pub fn output_limit(&self) -> u64 {
        self.max_output_bytes
            .unwrap_or(Self::DEFAULT_MAX_OUTPUT_BYTES)
    }

    /// Each key with its accepted range and what the range protects, for `validate`.
    pub const RANGES: &'static [(&'static str, u64, u64, &'static str)] = &[
        ("cpu_secs", 1, 7 * 24 * 3600, " (at most a week)"),
        (
            "memory_mb",
            16,
            1024 * 1024,
            " (below 16 MiB of address space no program starts; at most 1 TiB)",
        ),
        (
            "max_output_bytes",
            1,
            1024 * 1024 * 1024,
            " (the output is kept in memory: at most 1 GiB)",
        ),
        (
            "max_open_files",
            8,
            1024 * 1024,
            " (stdin, stdout and stderr take 3)",
        ),
    ];

    /// The value of key `key` of [`Self::RANGES`].
    pub fn get(&self, key: &str) -> Option<u64> {
        match key {
            "cpu_secs" => self.cpu_secs,
            "memory_mb" => self.memory_mb,
            "max_output_bytes" => self.max_output_bytes,
            "max_open_files" => self.max_open_files,
            _ => None,
        }
    }
}

/// The placeholder a command's argv may use for the absolute workspace folder
/// (commands start in the request's work folder under `work/`, so scripts are reached
/// as `{workspace}/resources/…`).
/// No tool argument may take this name.
pub const WORKSPACE_PLACEHOLDER: &str = "workspace";

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object"})
}

fn default_tool_timeout() -> Duration {
    Duration::from_secs(60)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPolicy {
    Required,
    #[default]
    Never,
}

/// Tools the runtime provides itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// `{path}` → file contents, confined to the request's work folder
    /// (`work/<session-id>/` by default: see [`WorkFolder`]).
    ReadFile,
    /// `{path, content}` → writes a file in the request's work folder.
    WriteFile,
    /// `{path?}` → lists files in the request's work folder.
    ListFiles,
    /// `{name, content, media_type?}` → stores an artifact of the request.
    WriteArtifact,
    /// `{agent, input}` → runs a delegate agent as a child request and returns its answer.
    Delegate,
    /// `{name}` → the full text of one of the agent's skills.
    LoadSkill,
}

impl Builtin {
    pub const ALL: &'static [Builtin] = &[
        Builtin::ReadFile,
        Builtin::WriteFile,
        Builtin::ListFiles,
        Builtin::WriteArtifact,
        Builtin::Delegate,
        Builtin::LoadSkill,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Builtin::ReadFile => "read_file",
            Builtin::WriteFile => "write_file",
            Builtin::ListFiles => "list_files",
            Builtin::WriteArtifact => "write_artifact",
            Builtin::Delegate => "delegate",
            Builtin::LoadSkill => "load_skill",
        }
    }
}

/// `config/mcp.yaml`: `servers: { NAME: McpServer }`. Each server's tools are listed
/// when a worker starts and offered as `NAME.TOOL`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpFile {
    #[serde(default, deserialize_with = "empty_as_default")]
    pub servers: BTreeMap<String, McpServer>,
}

/// One MCP server: a program spoken to over stdio (`command`, `args`, `env`) or a
/// streamable HTTP endpoint (`url`, `headers`); exactly one of `command` and `url`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// The program (stdio servers), run in the workspace folder.
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub args: Vec<String>,
    /// Extra environment for the program (`${VAR}` passes one of ours through; every
    /// `${VAR}` here is a secret). It otherwise gets only `PATH`, `HOME` and the locale.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub env: BTreeMap<String, String>,
    /// The endpoint (streamable HTTP servers).
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP headers sent with every request; `${VAR}` takes a value from the
    /// environment (every such value is a secret, redacted everywhere).
    #[serde(default, deserialize_with = "empty_as_default")]
    pub headers: BTreeMap<String, String>,
    /// The approval policy of this server's tools (a tool may override it in `tools`).
    #[serde(default)]
    pub approval: ApprovalPolicy,
    /// This server's tools are safe to run again after a crash interrupted them
    /// (a tool may override it in `tools`).
    #[serde(default)]
    pub idempotent: bool,
    /// How long one tool call may take.
    #[serde(default = "default_tool_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// How long starting the server (and listing its tools) may take.
    #[serde(default = "default_startup_timeout", with = "humantime_serde_compat")]
    pub startup_timeout: Duration,
    /// Per tool (the server's own tool name, without the `NAME.` prefix).
    #[serde(default, deserialize_with = "empty_as_default")]
    pub tools: BTreeMap<String, McpToolPolicy>,
}

impl McpServer {
    /// The approval policy and idempotency of this server's tool `tool`.
    pub fn policy(&self, tool: &str) -> (ApprovalPolicy, bool) {
        let own = self.tools.get(tool);
        (
            own.and_then(|t| t.approval).unwrap_or(self.approval),
            own.and_then(|t| t.idempotent).unwrap_or(self.idempotent),
        )
    }
}

/// A policy for one MCP tool, overriding its server's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpToolPolicy {
    #[serde(default)]
    pub approval: Option<ApprovalPolicy>,
    #[serde(default)]
    pub idempotent: Option<bool>,
}

fn default_startup_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Splits a namespaced MCP tool name `server.tool` (an agent may also list
/// `server.*`: every tool of the server).
pub fn split_mcp_name(name: &str) -> Option<(&str, &str)> {
    name.split_once('.')
}

/// `config/stores.yaml`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoresFile {
    /// Which database keeps the records.
    #[serde(default)]
    pub backend: StoreBackend,
    /// The SQLite store; with `backend: postgres`, its folder still holds this
    /// host's local runtime files (the running commands' records).
    #[serde(default, deserialize_with = "empty_as_default")]
    pub sqlite: SqliteStoreConfig,
    /// Required with `backend: postgres`.
    #[serde(default)]
    pub postgres: Option<PostgresStoreConfig>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// One file in the workspace, one worker at a time (the default).
    #[default]
    Sqlite,
    /// A PostgreSQL database, named by a URL held in an environment variable.
    Postgres,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStoreConfig {
    /// The environment variable holding the connection URL
    /// (`postgres://user:password@host:5432/db`). The URL is a secret: it is never
    /// written to the configuration, logs, events, errors or exports.
    pub url_env: String,
    /// Connections this process keeps to the database at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// The schema holding the store's tables (created at first start).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Seconds a worker's claim on a request holds without renewal (its heartbeat
    /// renews the claims it still holds, every few seconds). A request whose
    /// claim expired may be claimed again.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_lease_secs() -> u64 {
    15
}

fn default_pool_size() -> usize {
    16
}

fn default_schema() -> String {
    "agent_harness".to_string()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteStoreConfig {
    /// Store folder, relative to the workspace root.
    pub path: PathBuf,
    pub synchronous: Durability,
}

impl Default for SqliteStoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(".agent-harness"),
            synchronous: Durability::Normal,
        }
    }
}

/// SQLite `synchronous` in WAL mode. `normal`: a committed step survives a crash of
/// the process (the default: that is the failure this runtime recovers from, and a
/// lone session's steps cost several times less). `full`: it also survives power loss
/// or an OS crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    #[default]
    Normal,
    Full,
}

/// A key written with nothing after it (`runtime:` with every line under it
/// commented out, `tools:` with no entries) or `null` reads as the default.
fn empty_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Serde adapter for durations written as `30s`, `10m`, `24h`, `30d`.
pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}`: {e} (e.g. 30s, 10m, 24h, 30d)"
            ))
        })
    }
}
