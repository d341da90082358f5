//! Semantic checks across files (references between agents, models and tools;
//! limits that must be positive) and assembly of the [`Workspace`].

use crate::error::{ConfigError, suggestion};
use crate::load::Files;
use crate::parse::{Parsed, Source};
use crate::tools::build_tools;
use crate::types::{
    AgentConfig, Builtin, CommandLimits, McpFile, ModelConfig, ModelsFile, Provider, StoreBackend,
    StoresFile, ToolConfig, Workspace, WorkspaceFile,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Errors = Vec<ConfigError>;

/// Checks everything that parsed; returns the workspace when every file parsed.
pub(crate) fn assemble(root: PathBuf, files: Files, errors: &mut Errors) -> Option<Workspace> {
    if let Some(ws) = &files.workspace {
        check_workspace(ws, errors);
    }
    if let Some(models) = &files.models {
        check_models(&root, models, errors);
    }
    let mut tools = build_tools(files.tools.as_ref(), errors);
    if let (Some(t), Some(ws)) = (&files.tools, &files.workspace) {
        crate::tools::check_uses(t, &ws.value.resources, errors);
    }
    if let Some(ws) = &files.workspace {
        let defaults = ws.value.runtime.command_limits;
        for tool in tools.values_mut().filter(|t| t.command.is_some()) {
            tool.limits = tool.limits.or(defaults);
        }
    }
    if let Some(mcp) = &files.mcp {
        check_mcp(mcp, errors);
    }
    if let Some(stores) = &files.stores {
        check_stores(stores, errors);
    }
    let known = Known {
        models: files
            .models
            .as_ref()
            .map(|m| m.value.models.keys().map(String::as_str).collect()),
        tools: files.tools.is_some().then_some(&tools),
        mcp_servers: files
            .mcp
            .as_ref()
            .map(|m| m.value.servers.keys().map(String::as_str).collect()),
        agents: files.agents.iter().map(|a| a.value.name.as_str()).collect(),
        agents_complete: files.agents_complete,
        skills: files.skill_names.iter().map(String::as_str).collect(),
        resources: files
            .workspace
            .as_ref()
            .map(|w| w.value.resources.keys().map(String::as_str).collect()),
    };
    for agent in &files.agents {
        check_agent(agent, &known, errors);
    }
    if files.agents_complete {
        check_delegation_cycles(&files.agents, errors);
    }
    Some(Workspace {
        root,
        settings: files.workspace?.value,
        models: files.models?.value.models,
        agents: files
            .agents
            .into_iter()
            .map(|a| (a.value.name.clone(), a.value))
            .collect(),
        tools,
        mcp: files.mcp?.value,
        stores: files.stores?.value,
        skills: files.skills,
    })
}

fn check_workspace(ws: &Parsed<WorkspaceFile>, errors: &mut Errors) {
    let (src, value) = (&ws.src, &ws.value);
    if value.name.trim().is_empty() {
        errors.push(src.error(src.locator().scalar(&["name"]), "`name` must not be empty"));
    }
    let r = &value.runtime;
    const NO_DELEGATION: &str = " (a root request is depth 0; to forbid delegation, \
                                 remove the `delegate` tool from the agents)";
    let zero = [
        (
            "max_concurrent_requests",
            r.max_concurrent_requests == 0,
            "",
        ),
        ("queue_capacity", r.queue_capacity == 0, ""),
        ("approval_ttl", r.approval_ttl.is_zero(), ""),
        ("stuck_after", r.stuck_after.is_zero(), ""),
        ("retention", r.retention.is_zero(), ""),
        ("max_input_bytes", r.max_input_bytes == 0, ""),
        (
            "max_inline_output_bytes",
            r.max_inline_output_bytes == 0,
            "",
        ),
        (
            "max_delegation_depth",
            r.max_delegation_depth == 0,
            NO_DELEGATION,
        ),
        (
            "max_delegation_fanout",
            r.max_delegation_fanout == 0,
            NO_DELEGATION,
        ),
        (
            "max_attempts",
            r.max_attempts == 0,
            " (it counts the first start: 1 never retries after a crash)",
        ),
    ];
    for (key, _, hint) in zero.iter().filter(|(_, is_zero, _)| *is_zero) {
        let pos = src.locator().scalar(&["runtime", key]);
        errors.push(src.error(pos, format!("`runtime.{key}` must be greater than 0{hint}")));
    }
    for (name, capacity) in &value.resources {
        if !crate::tools::valid_tool_name(name) {
            let pos = src.locator().key(&["resources", name]);
            let msg = format!("resource name `{name}` must be 1-64 letters, digits, `_` or `-`");
            errors.push(src.error(pos, msg));
        }
        if *capacity == 0 {
            let pos = src.locator().scalar(&["resources", name]);
            errors.push(src.error(
                pos,
                format!("resource `{name}` must allow at least 1 holder (its capacity is 0)"),
            ));
        }
    }
    check_telemetry(src, &value.telemetry, errors);
    errors.extend(check_limits(
        &ws.src,
        &["runtime", "command_limits"],
        &r.command_limits,
        |key| format!("`runtime.command_limits.{key}`"),
    ));
}

/// `telemetry:`: an http(s) endpoint without credentials, a service name, header
/// names and the environment variable names their values come from.
fn check_telemetry(src: &Source, t: &crate::Telemetry, errors: &mut Errors) {
    if let Some(endpoint) = &t.otlp_endpoint
        && let Err(why) = crate::check_otlp_endpoint(endpoint)
    {
        let pos = src.locator().scalar(&["telemetry", "otlp_endpoint"]);
        errors.push(src.error(pos, format!("`telemetry.otlp_endpoint` {why}")));
    }
    if t.service_name
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        let pos = src.locator().scalar(&["telemetry", "service_name"]);
        errors.push(src.error(pos, "`telemetry.service_name` must not be empty"));
    }
    for (header, var) in &t.headers_env {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if header.is_empty() || !header.chars().all(token) {
            let pos = src.locator().key(&["telemetry", "headers_env", header]);
            let msg = format!("`telemetry.headers_env`: `{header}` is not an HTTP header name");
            errors.push(src.error(pos, msg));
        }
        let env_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if var.is_empty()
            || var.starts_with(|c: char| c.is_ascii_digit())
            || !var.chars().all(env_char)
        {
            let pos = src.locator().scalar(&["telemetry", "headers_env", header]);
            let msg = format!(
                "`telemetry.headers_env.{header}` names the environment variable holding the \
                 header's value (letters, digits, `_`), not the value itself"
            );
            errors.push(src.error(pos, msg));
        }
    }
}

/// Each key of `limits` (written under `path` in `src`) outside its range
/// ([`CommandLimits::RANGES`]); `named` says which setting a key is.
pub(crate) fn check_limits(
    src: &Source,
    path: &[&str],
    limits: &CommandLimits,
    named: impl Fn(&str) -> String,
) -> Errors {
    CommandLimits::RANGES
        .iter()
        .filter_map(|&(key, min, max, why)| {
            let value = limits.get(key)?;
            if (min..=max).contains(&value) {
                return None;
            }
            let at: Vec<&str> = path.iter().copied().chain([key]).collect();
            let msg = format!(
                "{} must be between {min} and {max}{why}, not {value}",
                named(key)
            );
            Some(src.error(src.locator().scalar(&at), msg))
        })
        .collect()
}

fn check_models(root: &Path, models: &Parsed<ModelsFile>, errors: &mut Errors) {
    let before = errors.len();
    for (name, model) in &models.value.models {
        errors.extend(check_model(root, models, name, model));
    }
    // Budgets are compared once each is sound on its own.
    if errors.len() == before {
        check_shared_rate_limits(models, errors);
    }
}

/// Models whose calls count against one rate limit (the same `rate_limit.key`, or a
/// key naming another model) must agree on its budget: which one's would win is
/// not for the reader to guess.
fn check_shared_rate_limits(models: &Parsed<ModelsFile>, errors: &mut Errors) {
    let (src, loc) = (&models.src, models.src.locator());
    let mut first: BTreeMap<&str, (&str, Option<u32>, Option<u64>)> = BTreeMap::new();
    for (name, m) in &models.value.models {
        if m.provider == Provider::Scripted {
            continue;
        }
        let r = m.rate_limit.clone().unwrap_or_default();
        let budget = (r.requests_per_minute, r.tokens_per_minute);
        let key = m.rate_limit_key(name);
        match first.get(key) {
            None => {
                first.insert(key, (name, budget.0, budget.1));
            }
            Some(&(other, rpm, tpm)) if (rpm, tpm) != budget => {
                let show = |rpm: Option<u32>, tpm: Option<u64>| {
                    let n = |v: Option<String>| v.unwrap_or_else(|| "unset".to_string());
                    format!(
                        "requests_per_minute {}, tokens_per_minute {}",
                        n(rpm.map(|v| v.to_string())),
                        n(tpm.map(|v| v.to_string()))
                    )
                };
                let pos = if m.rate_limit.is_some() {
                    loc.key(&["models", name, "rate_limit"])
                } else {
                    loc.key(&["models", name])
                };
                errors.push(src.error(
                    pos,
                    format!(
                        "model `{name}` shares rate limit `{key}` with model `{other}` but not its budget \
                         ({} here, {} there); set the same numbers on both",
                        show(budget.0, budget.1),
                        show(rpm, tpm)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
}

fn check_model(
    root: &Path,
    models: &Parsed<ModelsFile>,
    name: &str,
    m: &ModelConfig,
) -> Option<ConfigError> {
    let src = &models.src;
    let loc = src.locator();
    let provider = match m.provider {
        Provider::Scripted => "scripted",
        Provider::Openai => "openai",
        Provider::Anthropic => "anthropic",
    };
    let (pos, message) = match (m.provider, &m.script) {
        (Provider::Scripted, None) => (
            loc.key(&["models", name]),
            format!(
                "scripted model `{name}` needs `script` (the script file, relative to the workspace root)"
            ),
        ),
        (Provider::Scripted, Some(script)) if !root.join(script).is_file() => (
            loc.scalar(&["models", name, "script"]),
            format!("script file `{}` not found", script.display()),
        ),
        (Provider::Scripted, Some(_)) if m.rate_limit.is_some() => (
            loc.key(&["models", name, "rate_limit"]),
            "`rate_limit` is only for HTTP providers (`openai`, `anthropic`)".to_string(),
        ),
        (Provider::Scripted, Some(_)) => return None,
        // An OpenAI-compatible server of one's own (Ollama, vLLM, llama.cpp) may take no key.
        (Provider::Openai, _) if m.base_url.is_some() && m.api_key_env.is_none() => {
            return check_http_model(models, name, m);
        }
        _ if m.api_key_env.as_deref().is_none_or(str::is_empty) => (
            loc.key(&["models", name]),
            format!(
                "{provider} model `{name}` needs `api_key_env` (the name of the environment variable holding the API key)"
            ),
        ),
        _ if m.model.trim().is_empty() => (
            loc.key(&["models", name]),
            format!("{provider} model `{name}` needs `model` (the provider's model name)"),
        ),
        _ => return check_http_model(models, name, m),
    };
    Some(src.error(pos, message))
}

/// The settings of an HTTP provider's model that must make sense together.
fn check_http_model(
    models: &Parsed<ModelsFile>,
    name: &str,
    m: &ModelConfig,
) -> Option<ConfigError> {
    let src = &models.src;
    let loc = src.locator();
    let at = |key: &str| loc.scalar(&["models", name, key]);
    if m.model.trim().is_empty() {
        return Some(src.error(
            loc.key(&["models", name]),
            format!("model `{name}` needs `model` (the provider's model name)"),
        ));
    }
    if let Some(url) = &m.base_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Some(src.error(
            at("base_url"),
            format!("`base_url` must start with http:// or https:// (got `{url}`)"),
        ));
    }
    if m.script.is_some() {
        return Some(src.error(at("script"), "`script` is only for provider `scripted`"));
    }
    if let Some(budget) = m.thinking_budget {
        if m.provider != Provider::Anthropic {
            return Some(src.error(
                at("thinking_budget"),
                "`thinking_budget` is only for provider `anthropic`",
            ));
        }
        let max = m.max_tokens.unwrap_or(4096);
        if budget < 1024 || budget >= max {
            return Some(src.error(
                at("thinking_budget"),
                format!(
                    "`thinking_budget` must be at least 1024 and less than `max_tokens` ({max})"
                ),
            ));
        }
    }
    if m.max_tokens == Some(0) {
        return Some(src.error(at("max_tokens"), "`max_tokens` must be at least 1"));
    }
    if let Some(r) = &m.rate_limit {
        let at = |key: &str| loc.scalar(&["models", name, "rate_limit", key]);
        if r.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Some(src.error(
                at("key"),
                "`rate_limit.key` must not be empty (leave it out to use the model's name)",
            ));
        }
        for (key, zero) in [
            ("requests_per_minute", r.requests_per_minute == Some(0)),
            ("tokens_per_minute", r.tokens_per_minute == Some(0)),
        ] {
            if zero {
                return Some(src.error(
                    at(key),
                    format!("`rate_limit.{key}` must be at least 1 (leave it out for no limit)"),
                ));
            }
        }
    }
    for (key, d) in [
        ("connect_timeout", m.connect_timeout),
        ("request_timeout", m.request_timeout),
        ("read_timeout", m.read_timeout),
    ] {
        if d.is_zero() {
            return Some(src.error(at(key), format!("`{key}` must be greater than 0")));
        }
    }
    None
}

fn check_mcp(mcp: &Parsed<McpFile>, errors: &mut Errors) {
    let (src, loc) = (&mcp.src, mcp.src.locator());
    for (name, server) in &mcp.value.servers {
        let at = |key: &str| loc.key(&["servers", name, key]);
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            let msg = format!(
                "MCP server name `{name}` must be letters, digits, `_` or `-` (its tools are named `{name}.TOOL`)"
            );
            errors.push(src.error(loc.key(&["servers", name]), msg));
        }
        match (&server.command, &server.url) {
            (Some(_), Some(_)) => errors.push(src.error(
                at("url"),
                format!("MCP server `{name}` sets both `command` and `url`; set one (stdio or HTTP)"),
            )),
            (None, None) => errors.push(src.error(
                loc.key(&["servers", name]),
                format!("MCP server `{name}` needs `command` (a stdio server) or `url` (a streamable HTTP server)"),
            )),
            (Some(c), None) if c.trim().is_empty() => errors.push(src.error(
                at("command"),
                format!("MCP server `{name}` has an empty `command`"),
            )),
            (None, Some(u)) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                errors.push(src.error(
                    at("url"),
                    format!("MCP server `{name}`: `url` must start with http:// or https://, not `{u}`"),
                ))
            }
            _ => {}
        }
        if server.url.is_some() && (!server.args.is_empty() || !server.env.is_empty()) {
            let key = if server.args.is_empty() {
                "env"
            } else {
                "args"
            };
            let msg =
                format!("MCP server `{name}`: `{key}` is for stdio servers (`command`), not `url`");
            errors.push(src.error(at(key), msg));
        }
        if server.command.is_some() && !server.headers.is_empty() {
            let msg = format!(
                "MCP server `{name}`: `headers` is for HTTP servers (`url`), not `command`"
            );
            errors.push(src.error(at("headers"), msg));
        }
        for (key, d) in [
            ("timeout", server.timeout),
            ("startup_timeout", server.startup_timeout),
        ] {
            if d.is_zero() {
                errors.push(src.error(at(key), format!("`{key}` must be greater than 0")));
            }
        }
    }
}

fn check_stores(stores: &Parsed<StoresFile>, errors: &mut Errors) {
    let (src, v) = (&stores.src, &stores.value);
    let loc = src.locator();
    let Some(pg) = &v.postgres else {
        if v.backend == StoreBackend::Postgres {
            let msg = "`backend: postgres` needs a `postgres:` section with `url_env` (the \
                       environment variable holding the database URL)";
            errors.push(src.error(loc.scalar(&["backend"]), msg));
        }
        return;
    };
    let name_ok = !pg.url_env.is_empty()
        && !pg.url_env.starts_with(|c: char| c.is_ascii_digit())
        && pg
            .url_env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !name_ok {
        let msg = format!(
            "`postgres.url_env` must name an environment variable (letters, digits, `_`), \
             not `{}`: the URL itself is a secret and never goes in the configuration",
            if pg.url_env.contains("://") {
                "a URL"
            } else {
                &pg.url_env
            }
        );
        errors.push(src.error(loc.scalar(&["postgres", "url_env"]), msg));
    }
    if !(1..=1000).contains(&pg.pool_size) {
        let msg = format!(
            "`postgres.pool_size` must be between 1 and 1000, not {}",
            pg.pool_size
        );
        errors.push(src.error(loc.scalar(&["postgres", "pool_size"]), msg));
    }
    if !(5..=3600).contains(&pg.lease_secs) {
        let msg = format!(
            "`postgres.lease_secs` must be between 5 and 3600 seconds (the worker renews \
             its leases every few seconds), not {}",
            pg.lease_secs
        );
        errors.push(src.error(loc.scalar(&["postgres", "lease_secs"]), msg));
    }
    if !is_schema_name(&pg.schema) {
        let msg = format!(
            "`postgres.schema` must be a plain lower-case name (a-z, 0-9, `_`, at most 63 \
             bytes, not starting with a digit or `pg_`), not `{}`",
            pg.schema
        );
        errors.push(src.error(loc.scalar(&["postgres", "schema"]), msg));
    }
}

/// A schema name that needs no quoting and is not reserved by PostgreSQL.
pub(crate) fn is_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && !s.starts_with("pg_")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Names other files define (`None`: that file did not parse, so skip the check).
struct Known<'a> {
    models: Option<Vec<&'a str>>,
    tools: Option<&'a BTreeMap<String, ToolConfig>>,
    /// `None`: mcp.yaml did not parse.
    mcp_servers: Option<Vec<&'a str>>,
    agents: Vec<&'a str>,
    agents_complete: bool,
    skills: Vec<&'a str>,
    /// `None`: workspace.yaml did not parse.
    resources: Option<Vec<&'a str>>,
}

fn check_agent(agent: &Parsed<AgentConfig>, known: &Known, errors: &mut Errors) {
    let (src, a) = (&agent.src, &agent.value);
    let loc = src.locator();
    let stem = src
        .rel
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if a.name != stem {
        let msg = format!(
            "agent name `{}` does not match its file name (expected `{stem}`)",
            a.name
        );
        errors.push(src.error(loc.scalar(&["name"]), msg));
    }
    if let Some(models) = &known.models
        && !models.contains(&a.model.as_str())
    {
        let msg = format!(
            "unknown model `{}`{}",
            a.model,
            suggestion(&a.model, models.iter().copied())
        );
        errors.push(src.error(loc.scalar(&["model"]), msg));
    }
    if a.max_steps == 0 {
        errors.push(src.error(loc.scalar(&["max_steps"]), "`max_steps` must be at least 1"));
    }
    if a.max_concurrent == Some(0) {
        errors.push(src.error(
            loc.scalar(&["max_concurrent"]),
            "`max_concurrent` must be at least 1 (remove it for no limit)",
        ));
    }
    if let Some(resources) = &known.resources {
        for (i, r) in a.uses.iter().enumerate() {
            if !resources.contains(&r.as_str()) {
                let msg = format!(
                    "agent `{}` uses resource `{r}`, which `resources:` in config/workspace.yaml does not declare{}",
                    a.name,
                    suggestion(r, resources.iter().copied())
                );
                errors.push(src.error(loc.item(&["uses"], i, r), msg));
            }
        }
    }
    let c = &a.context;
    if c.max_tokens.is_some() && c.max_bytes.is_some() {
        let msg = "set one of `context.max_tokens` and `context.max_bytes`, not both";
        errors.push(src.error(loc.key(&["context"]), msg));
    } else if c.max_tokens == Some(0) || c.max_bytes == Some(0) {
        errors.push(src.error(
            loc.key(&["context"]),
            "the context budget must be greater than 0",
        ));
    }
    if let Some(tools) = known.tools {
        check_agent_tools(agent, tools, known.mcp_servers.as_deref(), errors);
    }
    if known.agents_complete {
        check_delegates(agent, &known.agents, errors);
    }
    for skill in a
        .skills
        .iter()
        .filter(|s| !known.skills.contains(&s.as_str()))
    {
        let msg = format!(
            "unknown skill `{skill}`{} (skills are `resources/skills/NAME/SKILL.md`)",
            suggestion(skill, known.skills.iter().copied())
        );
        errors.push(src.error(loc.value(&["skills"], skill), msg));
    }
}

fn check_agent_tools(
    agent: &Parsed<AgentConfig>,
    tools: &BTreeMap<String, ToolConfig>,
    mcp_servers: Option<&[&str]>,
    errors: &mut Errors,
) {
    let (src, a) = (&agent.src, &agent.value);
    let loc = src.locator();
    let names = || tools.keys().map(String::as_str);
    for tool in a.tools.iter().filter(|t| !tools.contains_key(*t)) {
        // `server.tool` / `server.*`: the server's tools are known once it runs.
        let msg = match (crate::split_mcp_name(tool), mcp_servers) {
            (Some((server, _)), Some(servers)) if servers.contains(&server) => continue,
            (Some(_), None) => continue, // mcp.yaml did not parse: reported there
            (Some((server, _)), Some(servers)) => format!(
                "unknown MCP server `{server}` in tool `{tool}`{} (servers are defined in config/mcp.yaml)",
                suggestion(server, servers.iter().copied())
            ),
            (None, _) => format!("unknown tool `{tool}`{}", suggestion(tool, names())),
        };
        errors.push(src.error(loc.value(&["tools"], tool), msg));
    }
    let delegate_tool = a.tools.iter().find(|t| {
        tools
            .get(*t)
            .is_some_and(|c| c.builtin == Some(Builtin::Delegate))
    });
    match (delegate_tool, a.delegates.is_empty()) {
        (Some(t), true) => errors.push(src.error(
            loc.value(&["tools"], t),
            format!(
                "`{t}` is in `tools` but `delegates` is empty; list the agents it may delegate to"
            ),
        )),
        (None, false) => errors.push(src.error(
            loc.key(&["delegates"]),
            "`delegates` is set but the `delegate` tool is not in `tools`",
        )),
        _ => {}
    }
}

fn check_delegates(agent: &Parsed<AgentConfig>, agents: &[&str], errors: &mut Errors) {
    let (src, a) = (&agent.src, &agent.value);
    for d in a.delegates.iter().filter(|d| !agents.contains(&d.as_str())) {
        let msg = format!(
            "unknown delegate agent `{d}`{}",
            suggestion(d, agents.iter().copied())
        );
        errors.push(src.error(src.locator().value(&["delegates"], d), msg));
    }
}

/// An agent that may delegate to itself, or A → B → A: a request could delegate
/// forever. Each cycle a depth-first walk meets is reported at the `delegates`
/// entry that closes it (the walk visits agents by name, so the report is stable).
fn check_delegation_cycles(agents: &[Parsed<AgentConfig>], errors: &mut Errors) {
    let by_name: BTreeMap<&str, &Parsed<AgentConfig>> =
        agents.iter().map(|a| (a.value.name.as_str(), a)).collect();
    let mut done = BTreeSet::new();
    for &start in by_name.keys() {
        let mut path = Vec::new();
        walk_delegates(start, &by_name, &mut path, &mut done, errors);
    }
}

fn walk_delegates<'a>(
    agent: &'a str,
    by_name: &BTreeMap<&'a str, &'a Parsed<AgentConfig>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
    errors: &mut Errors,
) {
    if done.contains(agent) {
        return;
    }
    let Some(parsed) = by_name.get(agent) else {
        return; // an unknown delegate, reported by check_delegates
    };
    path.push(agent);
    for target in &parsed.value.delegates {
        let target = target.as_str();
        if let Some(from) = path.iter().position(|a| *a == target) {
            let mut cycle = path[from..].to_vec();
            cycle.push(target);
            let src = &parsed.src;
            let msg = format!(
                "delegation cycle: {}; a request could delegate forever (remove one of these delegates)",
                cycle.join(" → ")
            );
            errors.push(src.error(src.locator().value(&["delegates"], target), msg));
        } else if let Some((&name, _)) = by_name.get_key_value(target) {
            walk_delegates(name, by_name, path, done, errors);
        }
    }
    path.pop();
    done.insert(agent);
}
