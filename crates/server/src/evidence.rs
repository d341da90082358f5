//! A request's artifacts (list and bytes), its evidence package, and resume.

use crate::ErrorBody;
use crate::{ApiError, ApiResult, AppState, Principal, Role};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use harness_core::*;
use harness_engine::{ErrorCode, Resumable};
use serde::{Deserialize, Serialize};

/// The largest evidence package `GET /v1/requests/{id}/export` sends by default, in
/// bytes (256 MiB); a bigger one is refused (413) and must be exported with the CLI.
pub const MAX_EXPORT_BYTES: u64 = 256 * 1024 * 1024;

/// Every version of every artifact of a request, as `runtime artifacts --json` prints.
#[utoipa::path(get, path = "/v1/requests/{id}/artifacts", tag = "artifacts",
    description = "Role: viewer. Every version of every artifact of a request (metadata; \
        the bytes are at `/v1/artifacts/{id}`).",
    params(("id" = String, Path, pattern = "^req_[0-9a-z]{1,60}$", description = "A request id (`req_…`)")),
    responses(
        (status = 200, description = "The artifacts", body = Vec<Artifact>),
        (status = 400, description = "Not a request id", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
    ))]
pub(crate) async fn list(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Vec<Artifact>> {
    p.require(Role::Viewer)?;
    let id = RequestId::parse(&id)?;
    // An unknown request is a 404, not an empty list.
    s.harness.get_request(&id).await?;
    Ok(Json(
        s.harness
            .store()
            .artifacts(&id)
            .await
            .map_err(harness_engine::HarnessError::from)?,
    ))
}

/// The stored bytes of one artifact version, read through the store by id.
#[utoipa::path(get, path = "/v1/artifacts/{id}", tag = "artifacts",
    description = "Role: viewer. The stored bytes of one artifact version, with its media \
        type, `Content-Disposition` (the name) and `ETag` (its SHA-256); 304 when \
        `If-None-Match` names that tag.",
    params(
        ("id" = String, Path, pattern = "^art_[0-9a-z]{1,60}$", description = "An artifact id (`art_…`)"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag this client holds"),
    ),
    responses(
        (status = 200, description = "The bytes, with the artifact's own media type",
            content_type = "*/*", body = Vec<u8>,
            headers(
                ("ETag" = String, description = "The quoted SHA-256 of the bytes"),
                ("Content-Disposition" = String, description = "`attachment` with the artifact's name"),
            )),
        (status = 304, description = "Not modified: the client's copy is current",
            headers(("ETag" = String, description = "The quoted SHA-256 of the bytes"))),
        (status = 400, description = "Not an artifact id", body = ErrorBody),
        (status = 404, description = "No such artifact, or its contents are gone from the store", body = ErrorBody),
    ))]
pub(crate) async fn download(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let id = ArtifactId::parse(&id)?;
    let store = s.harness.store();
    let a = store
        .get_artifact(&id)
        .await
        .map_err(harness_engine::HarnessError::from)?;
    let etag = format!("\"{}\"", a.sha256);
    let etag_value = HeaderValue::from_str(&etag)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "artifact hash is not a header value"))?;
    if none_match(&headers, &a.sha256) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let bytes = store
        .read_artifact(&a)
        .await
        .map_err(harness_engine::HarnessError::from)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "artifact {} ({} version {}) is recorded but its contents are gone from the store",
                    a.id, a.name, a.version
                ),
            )
        })?;
    let media_type = HeaderValue::from_str(&a.media_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, media_type),
            (header::CONTENT_LENGTH, HeaderValue::from(bytes.len())),
            (header::CONTENT_DISPOSITION, attachment(&a.name)),
            (header::ETAG, etag_value),
            // The contents are the agents' (a model may write HTML): never sniffed.
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Whether `If-None-Match` names the entity tag `"sha256"` (or `*`).
fn none_match(headers: &HeaderMap, sha256: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == sha256)
}

/// `attachment; filename="NAME"` with anything but plain printable ASCII (and `"`,
/// `\`) replaced by `_` in the quoted name, plus the exact name as RFC 5987
/// `filename*=UTF-8''…` for clients that read it.
pub fn attachment(name: &str) -> HeaderValue {
    let plain: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}"
    ))
    .expect("only printable ASCII")
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// Include the contents of artifacts (metadata is always included).
    #[serde(default)]
    artifact_contents: bool,
    /// Include a health snapshot taken at export time.
    #[serde(default)]
    health: bool,
}

/// The request's evidence package as `REQUEST.tar.gz`: what
/// `agent-harness runtime export request --out REQUEST.tar.gz` writes.
#[utoipa::path(get, path = "/v1/requests/{id}/export", tag = "artifacts",
    description = "Role: operator. The request's evidence package as `REQUEST.tar.gz` \
        (what `agent-harness runtime export request` writes); refused (413) over the \
        server's limit (256 MiB by default).",
    params(("id" = String, Path, pattern = "^req_[0-9a-z]{1,60}$", description = "A request id (`req_…`)"), ExportQuery),
    responses(
        (status = 200, description = "The gzipped tar archive", content_type = "application/gzip",
            body = Vec<u8>,
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"REQUEST.tar.gz\"`"))),
        (status = 400, description = "Not a request id; an unknown query field", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 413, description = "The package is over the server's limit", body = ErrorBody),
    ))]
pub(crate) async fn export(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let Query(q) = q?;
    let id = RequestId::parse(&id)?;
    let r = s.harness.get_request(&id).await?;
    let dir = tempfile::tempdir().map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("cannot make a temporary folder for the export: {e}"),
        )
    })?;
    let name = format!("{}.tar.gz", r.id);
    let path = dir.path().join(&name);
    let opts = harness_export::ExportOptions {
        session: r.session_id.clone(),
        request: Some(r.id.clone()),
        artifact_contents: q.artifact_contents,
        health: q.health,
        out: Some(path.clone()),
    };
    let summary = harness_export::export(&s.harness, &opts)
        .await
        .map_err(|e| {
            let code = harness_engine::error_code(e.as_ref());
            if code == ErrorCode::Internal {
                tracing::error!(error = %format!("{e:#}"), "export failed");
            }
            ApiError::new(code, format!("{e:#}"))
        })?;
    let max = s.limits.max_export_bytes;
    if summary.bytes > max {
        return Err(ApiError::too_large(format!(
            "the evidence package of {} is {} bytes, over the API's limit of {max} bytes: \
             export it with `agent-harness runtime export request --session {} --request {}`{}",
            r.id,
            summary.bytes,
            r.session_id,
            r.id,
            if q.artifact_contents {
                ", or here without artifact_contents"
            } else {
                ""
            }
        )));
    }
    // Opened before the folder is removed: the open file stays readable.
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("cannot read the export back: {e}"),
        )
    })?;
    drop(dir);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(summary.bytes)),
            (header::CONTENT_DISPOSITION, attachment(&name)),
        ],
        body,
    )
        .into_response())
}

/// Who continues a resumed request.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum HandledBy {
    /// The worker holding the workspace.
    Worker { worker_id: String, pid: u32 },
}

/// The answer of `POST /v1/requests/{id}/resume`: the shape
/// `runtime requests resume --json` prints when a worker continues the run.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Resumed {
    pub handled_by: HandledBy,
    /// The root request as it is now.
    pub request: Request,
}

/// Resumes a request left `queued` or `running` (or the root of its delegation
/// chain): the worker holding the workspace (this `serve`'s, or another beside
/// `serve --no-worker`) continues it. 409 when it is finished, paused for approval
/// (naming the pending approvals), or no worker holds the workspace.
#[utoipa::path(post, path = "/v1/requests/{id}/resume", tag = "requests",
    description = "Role: operator. Resumes a request left `queued` or `running` (or the \
        root of its delegation chain): the worker holding the workspace continues it.",
    params(("id" = String, Path, pattern = "^req_[0-9a-z]{1,60}$", description = "A request id (`req_…`)")),
    responses(
        (status = 202, description = "The worker holding the workspace continues it", body = Resumed),
        (status = 400, description = "Not a request id", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Finished, paused for approval, or no worker holds the workspace", body = ErrorBody),
    ))]
pub(crate) async fn resume(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Resumed>), ApiError> {
    p.require(Role::Operator)?;
    let id = RequestId::parse(&id)?;
    let root = match s.harness.resumable(&id).await? {
        Resumable::Ready(root) => root,
        Resumable::WaitingApproval { root, pending } => {
            let ids: Vec<&str> = pending.iter().map(|a| a.id.as_str()).collect();
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "request {} is waiting for approval; it resumes when the approval is resolved \
                     (POST /v1/approvals/{{id}}/resolve): pending {}",
                    root.id,
                    ids.join(", ")
                ),
            ));
        }
    };
    let Some(w) = s.harness.worker_holder().await? else {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "no worker holds the workspace to continue request {} (this server runs \
                 --no-worker): start one with `agent-harness serve`, or run it with \
                 `agent-harness runtime requests resume {}`",
                root.id, root.id
            ),
        ));
    };
    let request = s.harness.get_request(&root.id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Resumed {
            handled_by: HandledBy::Worker {
                worker_id: w.worker_id,
                pid: w.pid,
            },
            request,
        }),
    ))
}
