//! The workspace's tool table: every built-in tool, then the entries of
//! `config/tools.yaml` (command tools, aliases of built-ins, and overrides of
//! built-ins' description / approval / idempotent / timeout), each checked.

use crate::builtins::{builtin_named, builtin_tool};
use crate::error::{ConfigError, suggestion};
use crate::inline_code::{Interpreter, inline_code};
use crate::parse::{Parsed, Source};
use crate::types::{Builtin, ToolConfig, ToolsFile, WORKSPACE_PLACEHOLDER};
use std::collections::{BTreeMap, BTreeSet};

type Errors = Vec<ConfigError>;

/// Built-ins plus `tools.yaml` (when it parsed); problems go to `errors`.
pub(crate) fn build_tools(
    file: Option<&Parsed<ToolsFile>>,
    errors: &mut Errors,
) -> BTreeMap<String, ToolConfig> {
    let mut tools: BTreeMap<String, ToolConfig> = Builtin::ALL
        .iter()
        .map(|b| (b.name().to_string(), builtin_tool(*b)))
        .collect();
    let Some(file) = file else { return tools };
    for (name, cfg) in &file.value.tools {
        let keys: BTreeSet<&str> = file
            .src
            .locator()
            .keys(&["tools", name])
            .into_iter()
            .collect();
        match entry(&file.src, name, cfg, &keys) {
            Ok(tool) => {
                tools.insert(name.clone(), tool);
            }
            Err(mut es) => errors.append(&mut es),
        }
    }
    tools
}

fn entry(
    src: &Source,
    name: &str,
    cfg: &ToolConfig,
    keys: &BTreeSet<&str>,
) -> Result<ToolConfig, Errors> {
    let at = src.locator().key(&["tools", name]);
    if !valid_tool_name(name) {
        let msg = format!("tool name `{name}` must be 1-64 letters, digits, `_` or `-`");
        return Err(vec![src.error(at, msg)]);
    }
    match (cfg.builtin, &cfg.command, builtin_named(name)) {
        (Some(_), Some(_), _) => Err(vec![src.error(
            at,
            format!("tool `{name}` sets both `builtin` and `command`; set exactly one"),
        )]),
        (None, Some(_), Some(_)) => Err(vec![src.error(
            at,
            format!("`{name}` is a built-in tool; give the command tool another name"),
        )]),
        (Some(b), None, Some(n)) if b != n => Err(vec![src.error(
            src.locator().scalar(&["tools", name, "builtin"]),
            format!("`{name}` is a built-in tool; its `builtin` must be `{name}` or omitted"),
        )]),
        (Some(b), None, _) | (None, None, Some(b)) => builtin_entry(src, name, cfg, b, keys),
        (None, Some(command), None) => command_entry(src, name, cfg, command),
        (None, None, None) => Err(vec![src.error(
            at,
            format!(
                "tool `{name}` needs `command` (a program to run) or `builtin` (an alias of a built-in tool)"
            ),
        )]),
    }
}

pub(crate) fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A built-in under its own name or an alias: only some fields may change.
fn builtin_entry(
    src: &Source,
    name: &str,
    cfg: &ToolConfig,
    b: Builtin,
    keys: &BTreeSet<&str>,
) -> Result<ToolConfig, Errors> {
    let mut errors: Errors = ["arguments", "env", "allow_shell_placeholders", "limits"]
        .iter()
        .filter(|k| keys.contains(*k))
        .map(|k| {
            src.error(
                src.locator().key(&["tools", name, k]),
                format!(
                    "`{k}` cannot be set on `{name}`: it is the built-in tool `{}`",
                    b.name()
                ),
            )
        })
        .collect();
    errors.extend(zero_timeout(src, name, cfg));
    errors.extend(zero_max_concurrent(src, name, cfg));
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut tool = builtin_tool(b);
    if !cfg.description.is_empty() {
        tool.description.clone_from(&cfg.description);
    }
    if keys.contains("approval") {
        tool.approval = cfg.approval;
    }
    if keys.contains("idempotent") {
        tool.idempotent = cfg.idempotent;
    }
    if keys.contains("timeout") {
        tool.timeout = cfg.timeout;
    }
    tool.max_concurrent = cfg.max_concurrent;
    tool.uses.clone_from(&cfg.uses);
    Ok(tool)
}

fn command_entry(
    src: &Source,
    name: &str,
    cfg: &ToolConfig,
    command: &[String],
) -> Result<ToolConfig, Errors> {
    let loc = src.locator();
    let mut errors = Errors::new();
    if command.first().is_none_or(|p| p.trim().is_empty()) {
        errors.push(src.error(
            loc.key(&["tools", name, "command"]),
            format!("tool `{name}` has an empty `command`; give the program and its arguments, e.g. [\"sh\", \"resources/tools/x.sh\"]"),
        ));
    }
    let schema_type = cfg.arguments.get("type").and_then(|t| t.as_str());
    if schema_type != Some("object") {
        let found = schema_type
            .map(|t| format!(" (found `{t}`)"))
            .unwrap_or_default();
        errors.push(src.error(
            loc.scalar(&["tools", name, "arguments", "type"]),
            format!("the `arguments` schema of `{name}` must have `type: object`{found}"),
        ));
    }
    if let Err(e) = crate::schema::compile_schema(&cfg.arguments) {
        errors.push(src.error(
            loc.key(&["tools", name, "arguments"]),
            format!("the `arguments` schema of `{name}`: {e}"),
        ));
    }
    errors.extend(unknown_placeholders(src, name, cfg, command));
    errors.extend(placeholders_in_code(src, name, cfg, command));
    errors.extend(reserved_argument(src, name, cfg));
    errors.extend(zero_timeout(src, name, cfg));
    errors.extend(zero_max_concurrent(src, name, cfg));
    errors.extend(crate::validate::check_limits(
        src,
        &["tools", name, "limits"],
        &cfg.limits,
        |key| format!("`limits.{key}` of `{name}`"),
    ));
    if errors.is_empty() {
        Ok(cfg.clone())
    } else {
        Err(errors)
    }
}

fn zero_timeout(src: &Source, name: &str, cfg: &ToolConfig) -> Option<ConfigError> {
    cfg.timeout.is_zero().then(|| {
        src.error(
            src.locator().scalar(&["tools", name, "timeout"]),
            format!("the `timeout` of `{name}` must be greater than 0"),
        )
    })
}

fn zero_max_concurrent(src: &Source, name: &str, cfg: &ToolConfig) -> Option<ConfigError> {
    (cfg.max_concurrent == Some(0)).then(|| {
        src.error(
            src.locator().scalar(&["tools", name, "max_concurrent"]),
            format!(
                "the `max_concurrent` of `{name}` must be greater than 0 (remove it for no limit)"
            ),
        )
    })
}

/// Every resource a tool `uses` is declared under `resources:` in
/// `config/workspace.yaml`.
pub(crate) fn check_uses(
    file: &Parsed<ToolsFile>,
    resources: &BTreeMap<String, u32>,
    errors: &mut Errors,
) {
    for (name, cfg) in &file.value.tools {
        for (i, r) in cfg.uses.iter().enumerate() {
            if resources.contains_key(r) {
                continue;
            }
            let declared: Vec<&str> = resources.keys().map(String::as_str).collect();
            let hint = match declared.is_empty() {
                true => " (none are declared)".to_string(),
                false => format!(" (declared: {})", declared.join(", ")),
            };
            errors.push(file.src.error(
                file.src.locator().item(&["tools", name, "uses"], i, r),
                format!(
                    "tool `{name}` uses resource `{r}`, which `resources:` in config/workspace.yaml does not declare{hint}"
                ),
            ));
        }
    }
}

/// An argument named like the `{workspace}` placeholder would be ambiguous in the argv.
fn reserved_argument(src: &Source, name: &str, cfg: &ToolConfig) -> Option<ConfigError> {
    let declared = cfg
        .arguments
        .get("properties")
        .and_then(|p| p.get(WORKSPACE_PLACEHOLDER))
        .is_some();
    declared.then(|| {
        src.error(
            src.locator()
                .key(&["tools", name, "arguments", "properties", WORKSPACE_PLACEHOLDER]),
            format!(
                "argument `{WORKSPACE_PLACEHOLDER}` of `{name}` clashes with the built-in `{{{WORKSPACE_PLACEHOLDER}}}` placeholder (the workspace folder); rename the argument"
            ),
        )
    })
}

/// `{x}` in the argv where `x` is neither `workspace` nor a property of the arguments schema.
fn unknown_placeholders(src: &Source, name: &str, cfg: &ToolConfig, command: &[String]) -> Errors {
    let properties: Vec<&str> = cfg
        .arguments
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    command
        .iter()
        .flat_map(|arg| placeholders(arg))
        .filter(|p| *p != WORKSPACE_PLACEHOLDER && !properties.contains(p))
        .map(|p| {
            let hint = match suggestion(p, properties.iter().copied()) {
                s if s.is_empty() => format!("; declare `{p}` under `arguments.properties`"),
                s => s,
            };
            src.error(
                src.locator()
                    .value(&["tools", name, "command"], &format!("{{{p}}}")),
                format!("unknown placeholder `{{{p}}}` in the command of `{name}`{hint}"),
            )
        })
        .collect()
}

/// A `{placeholder}` inside code an interpreter runs (`sh -c "echo {text}"`): the
/// argument's value would run as code (`hi; rm -rf ~`). Refused unless the tool
/// sets `allow_shell_placeholders`; the safe form passes values as arguments.
fn placeholders_in_code(
    src: &Source,
    name: &str,
    cfg: &ToolConfig,
    command: &[String],
) -> Option<ConfigError> {
    if cfg.allow_shell_placeholders {
        return None;
    }
    let code = inline_code(command)?;
    let (at, found) = code.code.iter().find_map(|&at| {
        let found = placeholders(&command[at]);
        (!found.is_empty()).then_some((at, found))
    })?;
    let quoted: Vec<String> = found.iter().map(|p| format!("`{{{p}}}`")).collect();
    let (what, run_as) = match code.interpreter {
        Interpreter::Shell => ("shell script", "shell commands"),
        _ => ("inline code", "code"),
    };
    let message = format!(
        "{} {} inside the {what} of tool `{name}` (`{}`): an argument like `x; rm -rf ~` \
         would run as {run_as}. {} Or set `allow_shell_placeholders: true` on the tool to \
         accept that risk.",
        quoted.join(", "),
        if found.len() == 1 { "is" } else { "are" },
        code.shown,
        safe_form(code.interpreter, &found),
    );
    let pos = src.locator().item(
        &["tools", name, "command"],
        at,
        &format!("{{{}}}", found[0]),
    );
    Some(src.error(pos, message))
}

/// How to pass `found` as arguments the code reads, with an example.
fn safe_form(interpreter: Interpreter, found: &[&str]) -> String {
    type Read = fn(usize) -> String;
    let (first, read, before, example): (usize, Read, &str, &str) = match interpreter {
        Interpreter::Shell => (
            1,
            |i| format!("\"${i}\""),
            "\"sh\", ",
            r#"["sh", "-c", "echo \"$1\" > out", "sh", "{text}"]"#,
        ),
        Interpreter::Python => (
            1,
            |i| format!("sys.argv[{i}]"),
            "",
            r#"["python3", "-c", "import sys; print(sys.argv[1])", "{text}"]"#,
        ),
        Interpreter::Node => (
            1,
            |i| format!("process.argv[{i}]"),
            "",
            r#"["node", "-e", "console.log(process.argv[1])", "{text}"]"#,
        ),
        Interpreter::Perl => (
            0,
            |i| format!("$ARGV[{i}]"),
            "",
            r#"["perl", "-e", "print $ARGV[0]", "{text}"]"#,
        ),
        Interpreter::Ruby => (
            0,
            |i| format!("ARGV[{i}]"),
            "",
            r#"["ruby", "-e", "puts ARGV[0]", "{text}"]"#,
        ),
    };
    let reads: Vec<String> = (first..first + found.len()).map(read).collect();
    let values: Vec<String> = found.iter().map(|p| format!("\"{{{p}}}\"")).collect();
    format!(
        "Pass values as arguments after the code instead: write {} in the code and \
         append {before}{} to the command, e.g. {example}.",
        reads.join(", "),
        values.join(", ")
    )
}

/// The names in `{name}` placeholders of one argv element (`${VAR}` is not one).
pub(crate) fn placeholders(arg: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let dollar = rest[..open].ends_with('$');
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let inner = &after[..close];
        let is_name = !inner.is_empty() && inner.chars().all(|c| c.is_alphanumeric() || c == '_');
        if is_name && !dollar {
            found.push(inner);
        }
        rest = &after[close + 1..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn finds_placeholders() {
        assert_eq!(placeholders("{to}"), vec!["to"]);
        assert_eq!(placeholders("--to={to}&s={subject}"), vec!["to", "subject"]);
        assert_eq!(placeholders("${HOME}/x"), Vec::<&str>::new());
        assert_eq!(placeholders("{not a name} {}"), Vec::<&str>::new());
    }
}
