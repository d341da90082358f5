//! `runtime … --server URL --token T`: the HTTP API client the runtime commands read
//! and act through instead of the workspace's store.
//!
//! Errors keep the API's stable code: the body `{code, message}` of an error answer
//! becomes a [`RemoteError`] with that [`ErrorCode`], so a command exits with the same
//! code remotely as locally. The token is sent only in the `Authorization` header; it
//! is never printed, logged or put in an error (`Debug` of [`Server`] hides it).

use anyhow::Result;
use harness_core::ErrorCode;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

/// Environment variable for `--server`.
pub const SERVER_ENV: &str = "AGENT_HARNESS_SERVER";
/// Environment variable for `--token`.
pub const TOKEN_ENV: &str = "AGENT_HARNESS_TOKEN";

/// Where the API is, and the token to send.
#[derive(Clone)]
pub struct Server {
    pub url: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// An error answered by the server (or met reaching it), with its stable code.
#[derive(Debug)]
pub struct RemoteError {
    pub code: ErrorCode,
    pub message: String,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {}

fn remote(code: ErrorCode, message: impl Into<String>) -> anyhow::Error {
    RemoteError {
        code,
        message: message.into(),
    }
    .into()
}

/// The API client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// `base` without any user or password it was given with (for messages).
    shown: String,
    token: Option<String>,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    code: ErrorCode,
    message: String,
}

impl Client {
    pub fn new(s: &Server) -> Result<Client> {
        let base = Url::parse(&s.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                crate::output::bad_input(format!(
                    "--server `{}` is not an http:// or https:// URL",
                    s.url
                ))
            })?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| {
                remote(
                    ErrorCode::Internal,
                    format!("cannot build the HTTP client: {e}"),
                )
            })?;
        let token = s.token.clone().filter(|t| !t.trim().is_empty());
        let mut shown = base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let shown = shown.as_str().trim_end_matches('/').to_string();
        Ok(Client {
            http,
            base,
            shown,
            token,
        })
    }

    /// The server's address as given, without credentials (for messages).
    pub fn base(&self) -> &str {
        &self.shown
    }

    fn url(&self, path: &str) -> Result<Url> {
        let mut u = self.base.clone();
        let prefix = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{prefix}{path}"));
        Ok(u)
    }

    /// Sends a request; an error answer becomes a [`RemoteError`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let mut url = self.url(path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut rb = self.http.request(method, url);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&b)?);
        }
        let res = rb.send().await.map_err(|e| self.unreachable(&e))?;
        if res.status().is_success() {
            return Ok(res);
        }
        Err(self.answer_error(res).await)
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        // reqwest's message names the URL (no token: that is only in a header).
        let why = std::error::Error::source(e)
            .map(|s| {
                let mut text = s.to_string();
                let mut cur = s.source();
                while let Some(c) = cur {
                    text = format!("{text}: {c}");
                    cur = c.source();
                }
                text
            })
            .unwrap_or_else(|| e.to_string());
        remote(
            ErrorCode::Unavailable,
            format!(
                "cannot reach the server at {}: {why} (is `agent-harness serve --listen` running there?)",
                self.base()
            ),
        )
    }

    async fn answer_error(&self, res: reqwest::Response) -> anyhow::Error {
        let status = res.status();
        let bytes = res.bytes().await.unwrap_or_default();
        let Ok(b) = serde_json::from_slice::<ErrorBody>(&bytes) else {
            let code = match status {
                StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
                StatusCode::FORBIDDEN => ErrorCode::Forbidden,
                _ => ErrorCode::Unavailable,
            };
            return remote(
                code,
                format!(
                    "{} answered HTTP {status} without an agent-harness error: is --server the address of `agent-harness serve --listen`?",
                    self.base()
                ),
            );
        };
        let message = match b.code {
            ErrorCode::Unauthorized if self.token.is_none() => format!(
                "{}: {}; give one with --token or {TOKEN_ENV}",
                self.base(),
                b.message
            ),
            ErrorCode::Unauthorized => format!("{}: {}", self.base(), b.message),
            ErrorCode::Forbidden => format!("{}: {}", self.base(), b.message),
            _ => b.message,
        };
        remote(b.code, message)
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let res = self.send(Method::GET, path, query, None).await?;
        self.decode(res).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T> {
        let res = self.send(Method::POST, path, &[], Some(body)).await?;
        self.decode(res).await
    }

    /// A successful answer's body.
    pub async fn body(&self, res: reqwest::Response) -> Result<Vec<u8>> {
        Ok(res
            .bytes()
            .await
            .map_err(|e| self.unreachable(&e))?
            .to_vec())
    }

    async fn decode<T: DeserializeOwned>(&self, res: reqwest::Response) -> Result<T> {
        let bytes = self.body(res).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            remote(
                ErrorCode::Internal,
                format!(
                    "{} answered something this version cannot read ({e}): are client and server the same version?",
                    self.base()
                ),
            )
        })
    }
}

/// `GET /v1/events` read as Server-Sent Events: committed events in seq order.
pub struct EventStream {
    res: reqwest::Response,
    buf: Vec<u8>,
    base: String,
}

impl Client {
    /// Opens the event stream after seq `after` (sent as `Last-Event-ID`, so a
    /// reconnect resumes with no gap and no duplicate), narrowed by `query`.
    pub async fn events(&self, after: i64, query: &[(&str, String)]) -> Result<EventStream> {
        let mut url = self.url("/v1/events")?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut rb = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header("last-event-id", after.to_string());
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        let res = rb.send().await.map_err(|e| self.unreachable(&e))?;
        if !res.status().is_success() {
            return Err(self.answer_error(res).await);
        }
        Ok(EventStream {
            res,
            buf: Vec::new(),
            base: self.base().to_string(),
        })
    }
}

impl EventStream {
    /// The next event; `None` when the server ended the stream (it stopped, or the
    /// connection dropped).
    pub async fn next(&mut self) -> Result<Option<harness_core::Event>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let (mut kind, mut data) = (None, String::new());
                for l in text.lines() {
                    if let Some(v) = l.strip_prefix("event:") {
                        kind = Some(v.trim().to_string());
                    } else if let Some(v) = l.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                if kind.as_deref() == Some("error") {
                    let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                    return Err(remote(
                        ErrorCode::Unavailable,
                        format!(
                            "{}: the event stream failed: {}",
                            self.base,
                            v["message"].as_str().unwrap_or(&data)
                        ),
                    ));
                }
                let e = serde_json::from_str(&data).map_err(|e| {
                    remote(
                        ErrorCode::Internal,
                        format!("{} sent an event this version cannot read: {e}", self.base),
                    )
                })?;
                return Ok(Some(e));
            }
            match self.res.chunk().await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                Ok(None) | Err(_) => return Ok(None),
            }
        }
    }
}

/// A command that reads the store directly and has no API route: refused with
/// `--server` as invalid use (exit 2).
pub fn not_remote(what: &str) -> anyhow::Error {
    crate::output::bad_input(format!(
        "`{what}` reads the workspace's store directly and does not work with --server: \
         run it on the machine that holds the workspace (without --server)"
    ))
}
