//! The operator web console: server-rendered pages (maud) over the same engine
//! projections the CLI and the JSON API answer, mounted at `/console`.
//!
//! - `GET  /console`                  the overview (`views::Overview`)
//! - `GET  /console/approvals`        pending approvals first, then decided ones
//! - `POST /console/approvals/{id}`   operator: `decision=approve|reject|edit`,
//!   `message`, `arguments` (JSON, with `edit`); 303 to the request's page, or the
//!   approvals page again with the engine's refusal and what was typed
//! - `GET  /console/requests/{id}`    the request's timeline (`views::RequestTree`)
//! - `POST /console/requests/{id}/cancel` operator: cancel an unfinished root request
//!   (`reason`); `POST /console/requests/{id}/retry` operator: admit a finished root
//!   request again; both 303 to the request's page (the retry's new one), or the
//!   request's page again with the engine's refusal
//! - `GET  /console/health`           every check, failing first
//! - `GET|POST /console/login`, `POST /console/logout`: the session cookie
//!
//! Pages work without JavaScript (forms are plain POST + redirect); a small inline
//! script follows `GET /v1/events` from the page's last seq and swaps the page's
//! `<main>` when something happens. Viewers see no forms and their POSTs get 403;
//! every POST is refused when it comes from another site.

mod approvals;
mod health;
mod overview;
mod page;
mod request;
pub(crate) mod session;

use crate::{ApiError, AppState, Principal, Role};
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use harness_core::*;
use harness_engine::{ErrorCode, HarnessError};
use maud::html;
use page::{Cx, Nav, error_page, page};
use serde::Deserialize;

/// The console's routes (merged into the API's router).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(overview))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/approvals", get(approvals))
        .route("/console/approvals/{id}", axum::routing::post(decide))
        .route("/console/requests/{id}", get(request))
        .route("/console/requests/{id}/cancel", axum::routing::post(cancel))
        .route("/console/requests/{id}/retry", axum::routing::post(retry))
        .route("/console/health", get(health))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", axum::routing::post(logout))
}

type Page = Result<Response, Response>;

fn fail(e: impl Into<ApiError>) -> Response {
    error_page(e.into())
}

/// How many newest root requests the overview lists.
const RECENT: usize = 15;
/// How many decided approvals the approvals page lists.
const DECIDED: usize = 30;

async fn overview(State(s): State<AppState>, p: Result<Principal, ApiError>, uri: Uri) -> Page {
    let cx = Cx::new(&s, p, &uri).await?;
    let o = s.harness.overview(RECENT).await.map_err(fail)?;
    let title = overview::title(&o);
    Ok(page(
        &cx,
        StatusCode::OK,
        &title,
        Nav::Overview,
        "/v1/events",
        overview::render(&cx, &o),
    ))
}

async fn approvals(State(s): State<AppState>, p: Result<Principal, ApiError>, uri: Uri) -> Page {
    let cx = Cx::new(&s, p, &uri).await?;
    approvals_page(&s, &cx, StatusCode::OK, None).await
}

async fn approvals_page(
    s: &AppState,
    cx: &Cx,
    code: StatusCode,
    refusal: Option<approvals::Refusal>,
) -> Page {
    let list = |statuses: Vec<ApprovalStatus>, limit| {
        s.harness.list_approvals(ApprovalFilter {
            statuses,
            limit,
            ..Default::default()
        })
    };
    // Listed newest first: the oldest pending, which waits longest, goes first.
    let mut pending = list(vec![ApprovalStatus::Pending], 0).await.map_err(fail)?;
    pending.reverse();
    let decided = list(
        vec![
            ApprovalStatus::Approved,
            ApprovalStatus::Rejected,
            ApprovalStatus::Expired,
        ],
        DECIDED,
    )
    .await
    .map_err(fail)?;
    let title = match pending.len() {
        0 => "Approvals".to_string(),
        n => format!("({n}) Approvals"),
    };
    Ok(page(
        cx,
        code,
        &title,
        Nav::Approvals,
        "/v1/events",
        approvals::render(cx, &pending, &decided, refusal.as_ref()),
    ))
}

#[derive(Deserialize)]
struct DecideForm {
    decision: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    arguments: Option<String>,
}

async fn decide(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Page {
    // Without a session: log in, then back to the approvals (this route has no page).
    let back = Uri::from_static("/console/approvals");
    let cx = operator_post(&s, p, &method, &headers, &back).await?;
    let id = ApprovalId::parse(&id).map_err(fail)?;
    let Form(f) = form.map_err(|r| fail(ApiError::invalid(r.body_text())))?;
    let message = Some(f.message.trim().to_string()).filter(|m| !m.is_empty());
    let refuse = |message: String| approvals::Refusal {
        approval_id: id.to_string(),
        message,
        typed_message: f.message.clone(),
        typed_arguments: f.arguments.clone().filter(|_| f.decision == "edit"),
    };
    let (decision, edited) = match f.decision.as_str() {
        "approve" => (Decision::Approved, None),
        "reject" => (Decision::Rejected, None),
        "edit" => {
            let text = f.arguments.as_deref().unwrap_or("");
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) if v.is_object() => (Decision::Approved, Some(v)),
                Ok(_) => {
                    let r = refuse("the edited arguments must be a JSON object".into());
                    return approvals_page(&s, &cx, StatusCode::BAD_REQUEST, Some(r)).await;
                }
                Err(e) => {
                    let r = refuse(format!("the edited arguments are not valid JSON: {e}"));
                    return approvals_page(&s, &cx, StatusCode::BAD_REQUEST, Some(r)).await;
                }
            }
        }
        other => {
            return Err(fail(ApiError::invalid(format!(
                "decision `{other}` is not one of: approve, reject, edit"
            ))));
        }
    };
    let a = match s.harness.store().get_approval(&id).await {
        Ok(a) => a,
        Err(e) => return Err(fail(HarnessError::from(e))),
    };
    let r = ResolveApproval {
        session_id: a.session_id.clone(),
        request_id: a.request_id.clone(),
        approval_id: id.clone(),
        decision,
        message,
        decided_by: cx.principal.actor(&s.tokens),
        edited_arguments: edited,
    };
    match s.harness.resolve_approval(r).await {
        Ok(_) => {
            let root = s
                .harness
                .root_of(&a.request_id)
                .await
                .map(|r| r.id)
                .unwrap_or(a.request_id);
            Ok(Redirect::to(&format!("/console/requests/{root}")).into_response())
        }
        Err(e) if e.code() == ErrorCode::Internal || e.code() == ErrorCode::Unavailable => {
            Err(fail(e))
        }
        Err(e) => {
            let status = crate::status_of(e.code());
            let r = refuse(e.to_string());
            approvals_page(&s, &cx, status, Some(r)).await
        }
    }
}

async fn request(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    uri: Uri,
    Path(id): Path<String>,
) -> Page {
    let cx = Cx::new(&s, p, &uri).await?;
    let id = RequestId::parse(&id).map_err(fail)?;
    request_page(&s, &cx, &id, StatusCode::OK, None).await
}

async fn request_page(
    s: &AppState,
    cx: &Cx,
    id: &RequestId,
    code: StatusCode,
    refusal: Option<String>,
) -> Page {
    let t = s.harness.request_tree(id).await.map_err(fail)?;
    // The session's events cover the whole tree (delegated children share it).
    let events = format!(
        "/v1/events?session={}",
        page::encode(t.request.session_id.as_str())
    );
    let title = format!("{} {}", t.request.id, t.request.status.as_str());
    Ok(page(
        cx,
        code,
        &title,
        Nav::Requests,
        &events,
        request::render(cx, &t, refusal.as_deref()),
    ))
}

#[derive(Deserialize)]
struct CancelForm {
    #[serde(default)]
    reason: String,
}

/// What both request actions check first: [`operator_post`] on a request id;
/// without a session the login comes back to the request's page.
async fn acting_on(
    s: &AppState,
    p: Result<Principal, ApiError>,
    method: &Method,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Cx, RequestId), Response> {
    let id = RequestId::parse(id).map_err(fail)?;
    let back: Uri = format!("/console/requests/{id}")
        .parse()
        .map_err(|_| fail(ApiError::invalid("not a request id")))?;
    let cx = operator_post(s, p, method, headers, &back).await?;
    Ok((cx, id))
}

/// Every console POST that acts: same-site, by an operator. Without a session the
/// login comes back to `back`.
async fn operator_post(
    s: &AppState,
    p: Result<Principal, ApiError>,
    method: &Method,
    headers: &HeaderMap,
    back: &Uri,
) -> Result<Cx, Response> {
    session::same_origin(method, headers)
        .map_err(|m| fail(ApiError::new(ErrorCode::Forbidden, m)))?;
    let cx = Cx::new(s, p, back).await?;
    cx.principal.require(Role::Operator).map_err(fail)?;
    Ok(cx)
}

/// An action's outcome: a redirect to `to`, or the engine's refusal on the request's
/// page (a failing store is an error page, not a refusal).
async fn acted(
    s: &AppState,
    cx: &Cx,
    id: &RequestId,
    outcome: Result<RequestId, HarnessError>,
) -> Page {
    match outcome {
        Ok(to) => Ok(Redirect::to(&format!("/console/requests/{to}")).into_response()),
        Err(e) if matches!(e.code(), ErrorCode::Internal | ErrorCode::Unavailable) => Err(fail(e)),
        Err(e) => request_page(s, cx, id, crate::status_of(e.code()), Some(e.to_string())).await,
    }
}

async fn cancel(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CancelForm>, FormRejection>,
) -> Page {
    let (cx, id) = acting_on(&s, p, &method, &headers, &id).await?;
    let Form(f) = form.map_err(|r| fail(ApiError::invalid(r.body_text())))?;
    let reason = Some(f.reason.trim()).filter(|r| !r.is_empty());
    let by = cx.principal.actor(&s.tokens);
    let outcome = s.harness.cancel(&id, &by, reason).await.map(|r| r.id);
    acted(&s, &cx, &id, outcome).await
}

async fn retry(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let (cx, id) = acting_on(&s, p, &method, &headers, &id).await?;
    let outcome = s.harness.retry(&id).await.map(|r| r.id);
    acted(&s, &cx, &id, outcome).await
}

async fn health(State(s): State<AppState>, p: Result<Principal, ApiError>, uri: Uri) -> Page {
    let cx = Cx::new(&s, p, &uri).await?;
    let r = s.harness.health().await.map_err(fail)?;
    let title = format!("Health {}", r.status.as_str());
    Ok(page(
        &cx,
        StatusCode::OK,
        &title,
        Nav::Health,
        "/v1/events",
        health::render(&cx, &r),
    ))
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after logging in: a console page, never another site.
fn next_page(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console")
                && !n.contains(['\\', '\r', '\n'])
                && !n.starts_with("/console/login") =>
        {
            n.to_string()
        }
        _ => "/console".to_string(),
    }
}

async fn login_form(
    State(s): State<AppState>,
    q: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let next = q.ok().and_then(|Query(q)| q.next);
    login_page(&s, StatusCode::OK, next_page(next.as_deref()), None)
}

fn login_page(s: &AppState, code: StatusCode, next: String, error: Option<&str>) -> Response {
    let open = s.tokens.is_open();
    let doc = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · agent-harness" }
                style { (maud::PreEscaped(page::STYLE)) }
            }
            body {
                header { span.brand { "agent-harness" } }
                main {
                    h1 { "Log in" }
                    @if open {
                        p.banner.note { "This server has no tokens (config/server.yaml): it is open on loopback and needs no login. " a href="/console" { "Open the console" } }
                    } @else {
                        @if let Some(e) = error { p.banner.error #refusal { (e) } }
                        form method="post" action="/console/login" {
                            input type="hidden" name="next" value=(next);
                            p {
                                label for="token" { "Token (one of config/server.yaml's)" }
                                br;
                                input #token type="password" name="token" autocomplete="off" required size="48";
                            }
                            button type="submit" { "Log in" }
                        }
                        p.dim { "The token is kept in an HttpOnly cookie sent only to this site." }
                    }
                }
            }
        }
    };
    page::respond(code, doc)
}

async fn login(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if let Err(m) = session::same_origin(&method, &headers) {
        return fail(ApiError::new(ErrorCode::Forbidden, m));
    }
    let Ok(Form(f)) = form else {
        return login_page(
            &s,
            StatusCode::BAD_REQUEST,
            "/console".into(),
            Some("the form needs a token"),
        );
    };
    let next = next_page(f.next.as_deref());
    if s.tokens.is_open() {
        return Redirect::to(&next).into_response();
    }
    let token = f.token.trim();
    match s.tokens.check(token) {
        Some(_) => {
            let mut res = Redirect::to(&next).into_response();
            res.headers_mut()
                .insert(header::SET_COOKIE, session::set_cookie(token));
            res
        }
        None => login_page(
            &s,
            StatusCode::UNAUTHORIZED,
            next,
            Some("the token is not one this server knows"),
        ),
    }
}

async fn logout(method: Method, headers: HeaderMap) -> Response {
    if let Err(m) = session::same_origin(&method, &headers) {
        return fail(ApiError::new(ErrorCode::Forbidden, m));
    }
    let mut res = Redirect::to("/console/login").into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    res
}
