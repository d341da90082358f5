//! Rendering shared by every command: errors and exit codes, JSON, styles,
//! and one-line event summaries. Colour only on a terminal; `NO_COLOR` honoured
//! (anstream strips styles otherwise).

use anstyle::{AnsiColor, Style};
use harness_core::{
    ErrorCode, Event, EventKind, HealthStatus, RequestStatus, Usage, UsageTotals, describe_key,
    describe_waiter,
};
use std::io::Write;
use std::process::ExitCode;

/// At most `max` characters of `s` on one line.
pub use harness_engine::views::clip;

pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();
pub const GREEN: Style = AnsiColor::Green.on_default();
pub const YELLOW: Style = AnsiColor::Yellow.on_default();
pub const RED: Style = AnsiColor::Red.on_default();
pub const CYAN: Style = AnsiColor::Cyan.on_default();

/// Exit code for errors about bad input or unknown ids.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for refusals: wrong state, queue full, workspace held.
pub const EXIT_REFUSED: u8 = 3;
/// `requests watch`: the request paused for an operator's approval.
pub const EXIT_WAITING_APPROVAL: u8 = 4;
/// `requests watch`: the request was cancelled.
pub const EXIT_CANCELLED: u8 = 5;
/// `runtime health`: a check warns (none fails).
pub const EXIT_HEALTH_WARN: u8 = 6;
/// `runtime health`: a check fails.
pub const EXIT_HEALTH_FAIL: u8 = 7;
/// Interrupted by Ctrl-C (or SIGTERM) before the request settled.
pub const EXIT_INTERRUPTED: u8 = 130;

/// `serve`'s log filter without `RUST_LOG`: warnings, and the runtime's own info.
const SERVE_LOG_DEFAULT: &str = "warn,harness_engine=info,harness_server=info,harness_cli=info";

/// Overrides the log format: `json` or `text`.
pub const LOG_FORMAT_ENV: &str = "AGENT_HARNESS_LOG_FORMAT";

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`; for `serve`, also the
/// runtime's own `info` lines: each run's start and end and each tool call's end,
/// with their ids). `serve` logs JSON lines
/// when stderr is not a terminal (a file, a pipe, a journal), every other command and
/// a terminal human text; `AGENT_HARNESS_LOG_FORMAT=json|text` decides instead. A JSON
/// line carries the fields of the spans it is in: a request's run is a `request` span
/// (`request_id`, `session_id`, `trace_id`, `agent`, `root_id`), a step in it a
/// `step` span, a tool call a `tool.call` span (`call_id`, `tool`). With `tracer`
/// (`serve` exporting traces) the same spans, as the filter lets them through, also
/// go to OpenTelemetry. Fails on an unknown format.
pub fn init_logging(
    serve: bool,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(match serve {
            true => SERVE_LOG_DEFAULT,
            false => "warn",
        })
    });
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match std::env::var(LOG_FORMAT_ENV).as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        Ok("") | Err(std::env::VarError::NotPresent) => serve && !terminal,
        Ok(other) => {
            return Err(format!(
                "{LOG_FORMAT_ENV}={other:?}: the log format is `json` or `text`"
            ));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!(
                "{LOG_FORMAT_ENV} is not UTF-8: the log format is `json` or `text`"
            ));
        }
    };
    // Colour only on a terminal: serve's log is often a file.
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // A log line that cannot be written (stderr a file on a full disk) is dropped:
    // by default tracing-subscriber then reports it with `eprintln!`, which panics
    // when stderr fails too, and so kills whatever task was logging.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if json {
        // One object a line: timestamp, level, target, `fields` (the message and the
        // event's own), `span` (the innermost) and `spans` (every one, outermost first).
        let fmt = fmt.json().with_current_span(true).with_span_list(true);
        registry.with(fmt).try_init()
    } else {
        registry.with(fmt.with_ansi(colour)).try_init()
    };
    Ok(())
}

/// `text` in `style` (stripped when stdout is not a terminal or NO_COLOR is set).
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}

pub fn status_style(s: RequestStatus) -> Style {
    match s {
        RequestStatus::Completed => GREEN,
        RequestStatus::Failed => RED,
        RequestStatus::WaitingApproval => YELLOW,
        RequestStatus::Running => CYAN,
        RequestStatus::Queued | RequestStatus::Cancelled => DIM,
    }
}

pub fn health_style(s: HealthStatus) -> Style {
    match s {
        HealthStatus::Ok => GREEN,
        HealthStatus::Warn => YELLOW,
        HealthStatus::Fail => RED,
    }
}

/// Writes a line to stdout through anstream (which strips colour when needed).
pub fn line(text: impl AsRef<str>) {
    let mut out = anstream::stdout();
    let _ = writeln!(out, "{}", text.as_ref());
}

pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// The exit status of a command that ran or followed a request until it settled
/// (`run`, `requests resume`, `requests watch`), from one table: 0 completed,
/// 1 failed, 5 cancelled, 130 stopped before it settled; a pause for approval
/// exits `paused` (0 for `run`/`resume`, which handed it to an operator; 4 for `watch`).
pub fn outcome_exit(s: RequestStatus, paused: u8) -> ExitCode {
    ExitCode::from(match s {
        RequestStatus::Completed => 0,
        RequestStatus::Failed => 1,
        RequestStatus::Cancelled => EXIT_CANCELLED,
        RequestStatus::WaitingApproval => paused,
        RequestStatus::Queued | RequestStatus::Running => EXIT_INTERRUPTED,
    })
}

/// The width output must fit: `COLUMNS` when set, else the terminal's; `None`
/// when stdout is not a terminal (a pipe or a file gets every character).
pub fn terminal_width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`; it fails on a non-terminal.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// Classifies an error for its exit code: an explicit [`CliError`] code, else the
/// exit code of the error's stable code ([`harness_engine::error_code`]).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(c) = e.downcast_ref::<CliError>() {
        return c.code;
    }
    if let Some(r) = e.downcast_ref::<crate::remote::RemoteError>() {
        return r.code.exit_code();
    }
    harness_engine::error_code(e.as_ref()).exit_code()
}

/// The stable code name shown with an error (`--json`): an explicit CLI error
/// is named by its exit code.
pub fn code_name(e: &anyhow::Error) -> &'static str {
    match e.downcast_ref::<CliError>() {
        Some(c) if c.code == EXIT_BAD_INPUT => ErrorCode::InvalidInput.as_str(),
        Some(c) if c.code == EXIT_REFUSED => ErrorCode::Conflict.as_str(),
        Some(_) => ErrorCode::Internal.as_str(),
        None => match e.downcast_ref::<crate::remote::RemoteError>() {
            Some(r) => r.code.as_str(),
            None => harness_engine::error_code(e.as_ref()).as_str(),
        },
    }
}

/// An error with an explicit exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// A bad-input error (exit 2).
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    CliError {
        code: EXIT_BAD_INPUT,
        message: message.into(),
    }
    .into()
}

pub fn report_error(e: &anyhow::Error, json: bool) -> ExitCode {
    let code = exit_code(e);
    let message = error_message(e);
    if json {
        let v = serde_json::json!({"error": {"code": code_name(e), "message": message, "exit_code": code}});
        eprintln!("{v}");
    } else {
        let mut err = anstream::stderr();
        let _ = writeln!(err, "{} {message}", paint(RED.bold(), "error:"));
    }
    ExitCode::from(code)
}

/// The error and its causes joined with `: `, skipping a cause whose text the
/// message already holds (a wrapper that displays its source would repeat it).
pub fn error_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// One event as a single human line:
/// `#12 2026-01-05T17:00:01.234Z model.turn  assistant → send_mail`. The full
/// timestamp with its zone (UTC), so that a line pasted into a ticket or matched
/// against another system's log is unambiguous.
pub fn event_line(e: &Event) -> String {
    let clock = e.at.to_rfc3339();
    let style = match e.kind {
        EventKind::RequestFailed | EventKind::ToolInterrupted => RED,
        EventKind::RequestCompleted => GREEN,
        EventKind::ApprovalRequested
        | EventKind::RequestWaitingApproval
        | EventKind::RequestWaiting
        | EventKind::ApprovalExpired => YELLOW,
        _ => Style::new(),
    };
    format!(
        "{} {} {} {}",
        paint(DIM, format!("#{:<5}", e.seq)),
        paint(DIM, clock),
        paint(style, format!("{:<24}", e.kind.as_str())),
        event_summary(e)
    )
}

/// The few payload fields that matter for each kind of event.
pub fn event_summary(e: &Event) -> String {
    let p = &e.payload;
    let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let short_req = e
        .request_id
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    match e.kind {
        EventKind::RequestQueued => format!("{short_req} agent={}", s("agent")),
        EventKind::RequestStarted => format!(
            "{short_req} attempt={}",
            p.get("attempt").cloned().unwrap_or_default()
        ),
        EventKind::ModelTurn => {
            let calls: Vec<String> = p
                .get("calls")
                .and_then(|c| c.as_array())
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            c.get("tool")
                                .and_then(|t| t.as_str())
                                .unwrap_or("?")
                                .to_string()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let said = if calls.is_empty() {
                format!("{short_req} answer: {}", clip(&s("text"), 80))
            } else {
                format!("{short_req} calls {}", calls.join(", "))
            };
            match p
                .get("usage")
                .and_then(|u| serde_json::from_value(u.clone()).ok())
            {
                Some(u) => format!("{said} · {}", turn_tokens(&u)),
                None => said,
            }
        }
        EventKind::ToolStarted => format!(
            "{short_req} {} {}",
            s("tool"),
            clip(
                &p.get("arguments")
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                80
            )
        ),
        EventKind::ToolCompleted => format!(
            "{short_req} {} {} {}",
            s("tool"),
            if p.get("ok").and_then(|v| v.as_bool()).unwrap_or(false) {
                "ok"
            } else {
                "error"
            },
            clip(&s("preview"), 60)
        ),
        EventKind::ApprovalRequested => format!(
            "{short_req} {} needs approval {}",
            s("tool"),
            s("approval_id")
        ),
        EventKind::ApprovalResolved => format!(
            "{} {} by {}",
            s("approval_id"),
            s("decision"),
            s("decided_by")
        ),
        EventKind::DelegateStarted => {
            format!("{short_req} → {} ({})", s("agent"), s("child_request_id"))
        }
        EventKind::DelegateCompleted => format!("{short_req} ← {}", s("child_request_id")),
        EventKind::ArtifactCreated => format!(
            "{short_req} {} ({} bytes)",
            s("name"),
            p.get("size").cloned().unwrap_or_default()
        ),
        EventKind::RequestFailed => format!("{short_req} {}", s("error")),
        EventKind::RequestWaiting => {
            let list = |k: &str| -> Vec<String> {
                p.get(k)
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let limits: Vec<String> = list("limits").iter().map(|k| describe_key(k)).collect();
            let what = describe_waiter(&s("tool"));
            format!(
                "{short_req} {what} waits for {} (held by {})",
                limits.join(", "),
                list("held_by").join(", ")
            )
        }
        EventKind::NoteAdded => format!(
            "{short_req} note by {}{}: {}",
            s("by"),
            p.get("approval_id")
                .and_then(|a| a.as_str())
                .map(|a| format!(" on {a}"))
                .unwrap_or_default(),
            clip(&s("text"), 100)
        ),
        _ => short_req,
    }
}

/// `tokens 1,234 in / 56 out`.
pub fn tokens(u: &UsageTotals) -> String {
    format!(
        "tokens {} in / {} out",
        thousands(u.input_tokens),
        thousands(u.output_tokens)
    )
}

/// One turn's `tokens 1,234 in / 56 out`.
pub fn turn_tokens(u: &Usage) -> String {
    tokens(&UsageTotals {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        turns: 1,
    })
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
