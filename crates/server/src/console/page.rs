//! The page shell every console page shares (header, navigation, live updates),
//! its headers (a Content-Security-Policy that allows only this page's own
//! inline style and script, by hash), and small renderers of ids, statuses and times.

use crate::{ApiError, AppState, Principal, Role};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use harness_core::{EventKind, RequestId, Timestamp, relative};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

pub const STYLE: &str = include_str!("style.css");
const LIVE_JS: &str = include_str!("live.js");

/// The live-update script with the event kinds it listens for (EventSource reports
/// named events only to listeners of that name).
static SCRIPT: LazyLock<String> = LazyLock::new(|| {
    let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    format!(
        "const KINDS = {};\n{LIVE_JS}",
        serde_json::to_string(&kinds).expect("strings serialize")
    )
});

fn hash(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; connect-src 'self'; \
         img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        hash(STYLE),
        hash(&SCRIPT)
    ))
    .expect("a valid header")
});

/// What a page knows of its viewer and the moment it was read.
pub struct Cx {
    pub principal: Principal,
    /// No tokens: everyone is an admin and there is no login.
    pub open: bool,
    pub now: Timestamp,
    /// The last event seq before the page's records were read: the live stream
    /// starts after it, so nothing committed meanwhile is missed.
    pub seq: i64,
}

impl Cx {
    /// The viewer of a page: a browser without a valid session goes to the login
    /// page (and comes back to `uri` after).
    pub async fn new(
        s: &AppState,
        p: Result<Principal, ApiError>,
        uri: &Uri,
    ) -> Result<Cx, Response> {
        let principal = match p {
            Ok(p) => p,
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                let next = uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/console");
                return Err(
                    Redirect::to(&format!("/console/login?next={}", encode(next))).into_response(),
                );
            }
            Err(e) => return Err(error_page(e)),
        };
        let seq = s
            .harness
            .store()
            .last_seq()
            .await
            .map_err(|e| error_page(ApiError::from(harness_engine::HarnessError::from(e))))?;
        Ok(Cx {
            principal,
            open: s.tokens.is_open(),
            now: s.harness.now(),
            seq,
        })
    }

    /// Whether the viewer may decide approvals (operators and admins).
    pub fn can_act(&self) -> bool {
        self.principal.role >= Role::Operator
    }
}

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Approvals,
    Requests,
    Health,
}

/// A full page: `events` is the stream it follows (`/v1/events` with its filter).
pub fn page(
    cx: &Cx,
    status: StatusCode,
    title: &str,
    nav: Nav,
    events: &str,
    main: Markup,
) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agent-harness" }
                style { (PreEscaped(STYLE)) }
            }
            body data-seq=(cx.seq) data-events=(events) {
                header {
                    span.brand { "agent-harness" }
                    nav #nav {
                        (nav_link("/console", "Overview", nav == Nav::Overview))
                        (nav_link("/console/approvals", "Approvals", nav == Nav::Approvals))
                        (nav_link("/console/health", "Health", nav == Nav::Health))
                        @if nav == Nav::Requests { span.dim { "request" } }
                    }
                    span #live data-state="off" .dim { "○ not live" }
                    span.who {
                        @if cx.open {
                            "open server (no tokens): you act as " b { "anonymous" } " (admin)"
                        } @else {
                            "signed in as " b.principal { (cx.principal.name) } " (" (cx.principal.role.as_str()) ") "
                            form method="post" action="/console/logout" { button type="submit" { "Log out" } }
                        }
                    }
                }
                main { (main) }
                script { (PreEscaped(SCRIPT.as_str())) }
            }
        }
    };
    respond(status, doc)
}

fn nav_link(href: &str, text: &str, current: bool) -> Markup {
    html! {
        @if current { a href=(href) aria-current="page" { b { (text) } } } @else { a href=(href) { (text) } }
    }
}

/// An HTML answer with the console's security headers.
pub fn respond(status: StatusCode, doc: Markup) -> Response {
    let mut res = (status, doc.into_string()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::UNAUTHORIZED {
        // Every 401 names a challenge (RFC 9110 §15.5.2); the API's bearer scheme is
        // the one the server takes (the console's cookie carries such a token), and
        // browsers show no prompt of their own for it.
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::WWW_AUTHENTICATE),
        );
    }
    res
}

/// A page saying why something could not be shown or done, with the API's status.
pub fn error_page(e: ApiError) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Error · agent-harness" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { span.brand { "agent-harness" } nav { a href="/console" { "Overview" } } }
                main {
                    h1 { (e.status.as_u16()) " " (e.status.canonical_reason().unwrap_or("")) }
                    p.banner.error #refusal data-code=(e.code) { (e.message) }
                    @if e.status == StatusCode::UNAUTHORIZED {
                        p { a href="/console/login" { "Log in" } }
                    }
                }
            }
        }
    };
    respond(e.status, doc)
}

/// Percent-encodes `s` for a query value (unreserved characters and `/` kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `3m ago`, with the instant as its tooltip.
pub fn ago(now: Timestamp, t: Timestamp) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) { (relative(t.age(now))) " ago" } }
}

/// A status word, coloured by its class.
pub fn status(s: &str) -> Markup {
    html! { span class={ "status st-" (s) } data-status=(s) { (s) } }
}

/// A link to a request's page.
pub fn request_link(id: &RequestId) -> Markup {
    html! { a.id href={ "/console/requests/" (id) } { (id) } }
}

/// `s` cut to `max` characters, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// JSON as an operator reads it.
pub fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// `42ms`, `1.2s`, `3m 5s` (as `runtime requests show` says it).
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0) as u64;
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => {
            let s = ms / 1000;
            if s < 3600 {
                format!("{}m {}s", s / 60, s % 60)
            } else {
                format!("{}h {}m", s / 3600, (s % 3600) / 60)
            }
        }
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `23h`: how long from `now` until `t`.
pub fn relative_in(now: Timestamp, t: Timestamp) -> String {
    relative(now.age(t))
}
