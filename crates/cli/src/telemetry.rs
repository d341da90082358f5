//! `serve`'s OpenTelemetry traces: the runtime's spans (see `harness_engine::telemetry`)
//! exported over OTLP/HTTP (protobuf) when `telemetry.otlp_endpoint` in
//! `config/workspace.yaml` or `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector; off
//! otherwise. Spans go through the SDK's batch processor (its own thread), which
//! sends with the workspace's reqwest (rustls, ring) on the command's tokio runtime;
//! [`Telemetry::shutdown`] exports what is left when `serve` stops.

use harness_config::Telemetry as Config;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

/// The standard variable naming the collector's OTLP base URL.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporting tracer provider of a `serve`.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans still buffered, then stops the batch processor.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            eprintln!("warning: exporting the last traces failed: {e}");
        }
    }
}

/// Where `serve` exports, if anywhere: `<base>/v1/traces` of `telemetry.otlp_endpoint`,
/// else of `OTEL_EXPORTER_OTLP_ENDPOINT` (`env`). A base already ending in
/// `/v1/traces` is used as it is.
pub fn traces_url(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let (base, from) = match (&config.otlp_endpoint, env(ENDPOINT_ENV)) {
        (Some(url), _) => (url.clone(), "telemetry.otlp_endpoint"),
        (None, Some(url)) if !url.trim().is_empty() => (url, ENDPOINT_ENV),
        (None, _) => return Ok(None),
    };
    harness_config::check_otlp_endpoint(&base).map_err(|why| format!("{from} {why}"))?;
    let base = base.trim_end_matches('/');
    Ok(Some(if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }))
}

/// The tracer `serve` logs its spans to and the provider exporting them, when the
/// workspace at `root` (or the environment) names an endpoint. A workspace that
/// does not load exports nothing (`serve` reports why it does not load). Must be
/// called inside the tokio runtime the exports run on.
pub fn start(root: &Path) -> Result<Option<(Telemetry, SdkTracer)>, String> {
    let Ok(ws) = harness_config::load(root) else {
        return Ok(None);
    };
    let config = &ws.settings.telemetry;
    let env = |name: &str| std::env::var(name).ok();
    let Some(url) = traces_url(config, env)? else {
        return Ok(None);
    };
    let mut headers = HashMap::new();
    for (header, var) in &config.headers_env {
        let value = std::env::var(var).map_err(|_| {
            format!(
                "telemetry.headers_env.{header}: environment variable {var} is not set (it holds the header's value)"
            )
        })?;
        headers.insert(header.clone(), value);
    }
    harness_providers::install_crypto();
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .user_agent(concat!("agent-harness/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
    let client = OnRuntime {
        client,
        rt: tokio::runtime::Handle::current(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(headers)
        .build()
        .map_err(|e| format!("cannot set up the OTLP exporter for {url}: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name().to_string())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "agent-harness");
    Ok(Some((Telemetry { provider }, tracer)))
}

/// The exporter's HTTP client: the batch processor calls it from its own thread
/// (no tokio runtime there), so each request runs as a task on the command's runtime.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    rt: tokio::runtime::Handle,
}

type Reply =
    Result<opentelemetry_http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError>;

impl opentelemetry_http::HttpClient for OnRuntime {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Pin<Box<dyn Future<Output = Reply> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let task = self.rt.spawn(async move {
            opentelemetry_http::HttpClient::send_bytes(&client, request).await
        });
        Box::pin(async move {
            task.await
                .map_err(|e| Box::new(e) as opentelemetry_http::HttpError)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_comes_from_the_config_then_the_environment() {
        let none = |_: &str| None;
        let env = |_: &str| Some("http://env:4318".to_string());
        let mut c = Config::default();
        assert_eq!(traces_url(&c, none), Ok(None));
        assert_eq!(
            traces_url(&c, env).unwrap().unwrap(),
            "http://env:4318/v1/traces"
        );
        c.otlp_endpoint = Some("https://cfg:4318/".into());
        assert_eq!(
            traces_url(&c, env).unwrap().unwrap(),
            "https://cfg:4318/v1/traces"
        );
        c.otlp_endpoint = Some("http://cfg/otlp/v1/traces".into());
        assert_eq!(
            traces_url(&c, none).unwrap().unwrap(),
            "http://cfg/otlp/v1/traces"
        );
        let bad = |_: &str| Some("collector:4318".to_string());
        let err = traces_url(&Config::default(), bad).unwrap_err();
        assert!(
            err.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT must start with http://"),
            "{err}"
        );
    }
}
