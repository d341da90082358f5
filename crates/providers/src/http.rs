//! What the HTTP providers share: the client, retries, error classification and
//! reading a server-sent-event stream.
//!
//! A call is one or more attempts. An attempt sends the request and reads the whole
//! stream into a turn; any failure that may pass by itself (HTTP 408, 429, 5xx, a
//! connection refused or lost part-way, a timeout, a stream that ends before the
//! model finished) is retried after a backoff that doubles from `initial_backoff` to
//! `max_backoff`, with full jitter, or after the provider's `Retry-After` (which holds
//! every call of the model's rate limit key, see [`crate::ratelimit`]; each attempt
//! first waits for that limit). Watchers
//! are told (`ModelDelta::Restart`) when what they saw of a failed attempt is void.
//! Only a completed turn is returned: half a turn is never recorded.

use crate::ratelimit::{Budget, Caller, Limiter, RateLimits, TooLong};
use crate::stream::Coalescer;
use crate::{ModelError, ModelReply, ModelRequest, RawResponse};
use futures_util::StreamExt;
use harness_config::{ModelConfig, RetryConfig};
use harness_core::{ModelTurn, TurnInfo};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One provider's wire format.
pub(crate) trait Protocol: Send + Sync + 'static {
    /// `openai`, `anthropic`: recorded in each turn.
    const NAME: &'static str;
    type Turn: TurnBuilder;

    /// The request body for this call (built once, sent by every attempt).
    fn body(&self, req: &ModelRequest<'_>) -> Result<Vec<u8>, ModelError>;
    /// The endpoint's path after the base URL.
    fn path(&self) -> &'static str;
    /// Headers that carry the key and the API version.
    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)>;
    /// A fresh accumulator for one attempt's stream.
    fn turn(&self) -> Self::Turn;
}

/// Builds a turn from a stream's events.
pub(crate) trait TurnBuilder: Send {
    /// One event (`event:` name, if any, and its data). Returns true once the stream
    /// says it is complete.
    fn event(
        &mut self,
        name: Option<&str>,
        data: &str,
        out: &mut Coalescer<'_>,
    ) -> Result<bool, ModelError>;
    /// The completed turn; an error if the stream stopped before the model finished.
    fn finish(self) -> Result<(ModelTurn, TurnInfo), ModelError>;
}

/// A model behind an HTTP API.
pub(crate) struct HttpModel<P: Protocol> {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    /// Hides the key from every error and log line of this model, whatever the
    /// provider's message quotes (the engine redacts again with all the workspace's
    /// secrets, but a retry's log line is written here, before that).
    redactor: harness_core::Redactor,
    /// The model's name in `models.yaml`, for error messages.
    name: String,
    request_timeout: Duration,
    retry: RetryConfig,
    keep_raw: bool,
    protocol: P,
    /// The rate limit its calls count against (shared by key across the process).
    limiter: Arc<Limiter>,
}

impl<P: Protocol> HttpModel<P> {
    pub(crate) fn new(
        name: &str,
        config: &ModelConfig,
        default_base: &str,
        key: Option<String>,
        protocol: P,
        limits: &RateLimits,
    ) -> Result<Self, ModelError> {
        let base = config.base_url.as_deref().unwrap_or(default_base);
        let url = format!("{}{}", base.trim_end_matches('/'), protocol.path());
        reqwest::Url::parse(&url).map_err(|e| {
            ModelError::Config(format!(
                "model `{name}`: base_url `{base}` is not a URL: {e}"
            ))
        })?;
        Ok(Self {
            client: client(config)?,
            url,
            redactor: harness_core::Redactor::new(key.iter()),
            key,
            name: name.to_string(),
            request_timeout: config.request_timeout,
            retry: config.retry.clone(),
            keep_raw: config.keep_raw_responses,
            protocol,
            limiter: limits.limiter(config.rate_limit_key(name), Budget::of(config)),
        })
    }

    pub(crate) async fn call(&self, req: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let body = bytes::Bytes::from(self.protocol.body(&req)?);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.wait_for_limit(&req, attempt).await?;
            let mut out = Coalescer::new(req.deltas);
            let result = self
                .attempt(body.clone(), req.trace_id, req.traceparent, &mut out)
                .await;
            let e = match result {
                Ok((turn, mut info, raw)) => {
                    if let Some(u) = &info.usage {
                        self.limiter
                            .record_tokens(u.input_tokens.saturating_add(u.output_tokens));
                    }
                    info.attempts = Some(attempt);
                    return Ok(ModelReply { turn, info, raw });
                }
                Err(e) => e.redacted(&self.redactor),
            };
            if let Some(after) = e.retry_after() {
                // The provider speaks for every call of the key, not this one alone.
                self.limiter.block_for(after);
            }
            let wait = match self.retry_wait(&e, attempt) {
                Some(wait) => wait,
                None => return Err(self.explain(e, attempt)),
            };
            tracing::warn!(model = %self.name, attempt, wait_ms = wait.as_millis() as u64, error = %e, "model call failed; retrying");
            if out.emitted() {
                out.restart(format!("attempt {attempt} failed ({e}); retrying"));
            }
            if e.retry_after().is_none() {
                stoppable(&req, tokio::time::sleep(wait), "the worker is stopping").await?;
            }
            // Else the key's hold keeps this call, with every other of the key, until
            // then (`wait_for_limit`), where operators see it waiting.
        }
    }

    /// Waits until the rate limit lets attempt `attempt` start (counting it), or
    /// fails: the caller stops waiting, or the provider blocked the key for longer
    /// than `retry.max_backoff`.
    async fn wait_for_limit(&self, req: &ModelRequest<'_>, attempt: u32) -> Result<(), ModelError> {
        let caller = Caller {
            model: &self.name,
            request_id: Some(req.request_id),
        };
        let acquired = self.limiter.acquire(caller, Some(self.retry.max_backoff));
        let why = "the worker is stopping (it waited for its rate limit)";
        match stoppable(req, acquired, why).await? {
            Ok(()) => Ok(()),
            Err(TooLong { wait }) => {
                let e = ModelError::Transient {
                    message: format!(
                        "the provider asked every call of rate limit `{}` to wait {}s more, longer than retry.max_backoff",
                        self.limiter.key(),
                        wait.as_secs_f64().ceil() as u64
                    ),
                    retry_after: Some(wait),
                };
                Err(self.explain(e, attempt - 1))
            }
        }
    }

    /// How long to wait before the next attempt, or None to give up.
    fn retry_wait(&self, e: &ModelError, attempt: u32) -> Option<Duration> {
        if !e.is_retryable() || attempt > self.retry.max_retries {
            return None;
        }
        if let Some(after) = e.retry_after() {
            // The provider knows best; one that asks for longer than we may wait ends it.
            return (after <= self.retry.max_backoff).then_some(after);
        }
        let exp = self
            .retry
            .initial_backoff
            .saturating_mul(1u32 << (attempt - 1).min(16));
        let cap = exp.min(self.retry.max_backoff);
        // Full jitter: many runs retrying together spread out instead of colliding.
        Some(cap.mul_f64(0.5 + fastrand::f64() / 2.0))
    }

    /// The error as the request records it: which model, which endpoint, how many tries.
    fn explain(&self, e: ModelError, attempts: u32) -> ModelError {
        let tries = if attempts > 1 {
            format!(" (after {attempts} attempts)")
        } else {
            String::new()
        };
        let at = format!("model `{}` at {}", self.name, self.url);
        match e {
            ModelError::Refused { status, message } => ModelError::Refused {
                status,
                message: format!("{at} refused the request (HTTP {status}): {message}"),
            },
            ModelError::Transient {
                message,
                retry_after,
            } => {
                // What to do next: a server that is not there, or more patience.
                let next = if message.starts_with("could not connect") {
                    "; check that the server at `base_url` is running and reachable"
                } else {
                    "; `retry` in config/models.yaml sets how many attempts a call gets"
                };
                ModelError::Transient {
                    message: format!("{at}: {message}{tries}{next}"),
                    retry_after,
                }
            }
            ModelError::Call(m) => ModelError::Call(format!("{at}: {m}")),
            ModelError::Config(m) => ModelError::Config(m),
            ModelError::Stopped(m) => ModelError::Stopped(m),
        }
    }

    /// One request and its whole stream.
    async fn attempt(
        &self,
        body: bytes::Bytes,
        trace_id: Option<&str>,
        traceparent: Option<&str>,
        out: &mut Coalescer<'_>,
    ) -> Result<(ModelTurn, TurnInfo, Option<RawResponse>), ModelError> {
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.request_timeout)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(body);
        for (name, value) in self.protocol.headers(self.key.as_deref()) {
            request = request.header(name, value);
        }
        if let Some(trace_id) = trace_id {
            let header =
                traceparent.map_or_else(|| crate::trace::traceparent(trace_id), str::to_string);
            request = request.header("traceparent", header);
        }
        let sent = Instant::now();
        let late = |sent: Instant| sent.elapsed() >= self.request_timeout;
        let response = request.send().await.map_err(|e| transport(e, late(sent)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(response).await);
        }
        let raw = self.keep_raw.then(|| Arc::new(Mutex::new(Vec::new())));
        let copy = raw.clone();
        let bytes = response.bytes_stream().map(move |chunk| {
            if let (Ok(b), Some(raw)) = (&chunk, &copy) {
                raw.lock().expect("raw").extend_from_slice(b);
            }
            chunk
        });
        let mut events = sse_stream::SseStream::from_bytes_stream(bytes);
        let mut turn = self.protocol.turn();
        let mut first_delta: Option<Duration> = None;
        loop {
            let due = out.due();
            let next = tokio::select! {
                next = events.next() => next,
                () = sleep_until(due), if due.is_some() => {
                    out.flush();
                    continue;
                }
            };
            let event = match next {
                None => break,
                Some(Ok(e)) => e,
                Some(Err(e)) => return Err(broken_stream(e, late(sent))),
            };
            let Some(data) = event.data.as_deref() else {
                continue;
            };
            let done = turn.event(event.event.as_deref(), data, out)?;
            if first_delta.is_none() && out.emitted() {
                first_delta = Some(sent.elapsed());
            }
            if done {
                break;
            }
        }
        out.flush();
        let (turn, mut info) = turn.finish()?;
        info.provider = P::NAME.to_string();
        info.first_delta_ms = first_delta.map(|d| d.as_millis() as u64);
        let raw = raw.map(|r| RawResponse {
            media_type: "text/event-stream".to_string(),
            extension: "sse",
            bytes: std::mem::take(&mut *r.lock().expect("raw")),
        });
        Ok((turn, info, raw))
    }
}

/// `f`, unless the caller's `stop_waiting` fires first.
async fn stoppable<T>(
    req: &ModelRequest<'_>,
    f: impl std::future::Future<Output = T>,
    why: &str,
) -> Result<T, ModelError> {
    match req.stop_waiting {
        None => Ok(f.await),
        Some(stop) => tokio::select! {
            out = f => Ok(out),
            () = stop.cancelled() => Err(ModelError::Stopped(why.to_string())),
        },
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A client per model: its pool keeps connections to the provider open between calls.
/// Installs rustls' ring provider as the process default (once), before any
/// reqwest client is built.
pub fn install_crypto() {
    static CRYPTO: OnceLock<()> = OnceLock::new();
    CRYPTO.get_or_init(|| {
        // Err: a provider was installed already (by the embedding program), which serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn client(config: &ModelConfig) -> Result<reqwest::Client, ModelError> {
    install_crypto();
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .user_agent(concat!("agent-harness/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ModelError::Config(format!("cannot build the HTTP client: {e}")))
}

/// What `request_timeout` cutting a call short is called in its error.
const OVER_REQUEST_TIMEOUT: &str = "timed out: the call took longer than request_timeout";

/// A request that got no (complete) answer. Every transport failure may pass: a
/// refused or reset connection, a timeout, a body cut short. `late`: the call ran
/// past its `request_timeout`.
fn transport(e: reqwest::Error, late: bool) -> ModelError {
    let what = if e.is_timeout() && late {
        OVER_REQUEST_TIMEOUT
    } else if e.is_connect() && e.is_timeout() {
        "could not connect within connect_timeout"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_timeout() {
        "timed out waiting for the response (read_timeout)"
    } else {
        "the connection failed"
    };
    ModelError::Transient {
        message: format!("{what}: {}", chain(&e)),
        retry_after: None,
    }
}

fn broken_stream(e: sse_stream::Error, late: bool) -> ModelError {
    let timed_out = timed_out(&e);
    let what = if timed_out && late {
        OVER_REQUEST_TIMEOUT
    } else if timed_out {
        "timed out: the stream went silent past read_timeout"
    } else {
        "the stream broke before the model finished"
    };
    ModelError::Transient {
        message: format!("{what}: {}", chain(&e)),
        retry_after: None,
    }
}

/// Whether a timeout is among `e`'s causes (reqwest's, or an I/O one).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let timeout = c
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if timeout {
            return true;
        }
        cause = c.source();
    }
    false
}

/// An error and its causes on one line (reqwest's own message is often just "error
/// sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Longest error body read from a provider.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// A non-success response: retryable (408, 429, 5xx) or refused, with the provider's
/// own message.
async fn refusal(response: reqwest::Response) -> ModelError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let body = read_bounded(response).await;
    let message = provider_message(&body);
    if status == 408 || status == 429 || status >= 500 {
        ModelError::Transient {
            message: format!("HTTP {status}: {message}"),
            retry_after,
        }
    } else {
        ModelError::Refused { status, message }
    }
}

async fn read_bounded(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The message in a provider's error body (`{"error": {"message": …}}` for both
/// OpenAI and Anthropic), else the body itself, trimmed.
pub(crate) fn provider_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error.and_then(|e| match e {
        serde_json::Value::String(s) => Some(s.clone()),
        e => e.get("message")?.as_str().map(str::to_string),
    });
    let kind = error.and_then(|e| e.get("type")?.as_str());
    match (message, kind) {
        (Some(m), Some(k)) => format!("{m} ({k})"),
        (Some(m), None) => m,
        _ if body.trim().is_empty() => "(no message)".to_string(),
        _ => harness_core::preview(body.trim(), 500),
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A `{"error": …}` object inside a stream: overloads and server errors may pass.
pub(crate) fn stream_error(data: &serde_json::Value) -> ModelError {
    let error = data.get("error").unwrap_or(data);
    let kind = error.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let message = error
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("an error without a message");
    let message = format!("the provider reported an error in the stream: {message} ({kind})");
    let transient = kind.is_empty()
        || matches!(
            kind,
            "overloaded_error" | "api_error" | "server_error" | "rate_limit_error" | "timeout"
        );
    if transient {
        ModelError::Transient {
            message,
            retry_after: None,
        }
    } else {
        ModelError::Call(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn the_providers_message_is_found_in_its_error_body() {
        assert_eq!(
            provider_message(
                r#"{"error":{"message":"Invalid model","type":"invalid_request_error"}}"#
            ),
            "Invalid model (invalid_request_error)"
        );
        assert_eq!(
            provider_message(
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: x"}}"#
            ),
            "model: x (not_found_error)"
        );
        assert_eq!(provider_message(r#"{"error":"bad key"}"#), "bad key");
        assert_eq!(
            provider_message("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(provider_message(""), "(no message)");
    }
}
