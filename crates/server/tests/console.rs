//! The web console over plain HTTP (in process, against the router): pages render
//! the engine's facts escaped, viewers get no forms and a 403 on POST, an operator's
//! form decision is recorded under the token's name, refusals show the engine's
//! message (never a 500) and keep what was typed, the login cookie authenticates
//! the pages and the JSON API, and cross-site POSTs are refused.

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode, header};
use harness_core::*;
use harness_engine::{Harness, WorkerOptions, run_until_settled};
use harness_server::{Role, Tokens, router};
use http_body_util::BodyExt;
use std::time::Duration;
use tower::ServiceExt;

const VIEWER: &str = "tok-viewer";
const OPERATOR: &str = "tok-operator";

struct Console {
    _dir: tempfile::TempDir,
    h: Harness,
    app: axum::Router,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn console(tokens: Tokens) -> Console {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let app = router(h.clone(), tokens, rx);
    Console {
        _dir: dir,
        h,
        app,
        _stop: stop,
    }
}

fn tokens() -> Tokens {
    Tokens::open()
        .with_token("vera", Role::Viewer, VIEWER)
        .with_token("otto", Role::Operator, OPERATOR)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

/// How a caller authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// A session cookie value, as a browser sends it back.
    Cookie(&'a str),
}

fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Console {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        auth: Auth<'_>,
        extra: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let mut b = HttpRequest::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "127.0.0.1:8080");
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => b = b.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Auth::Cookie(c) => b = b.header(header::COOKIE, c),
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(f) => b
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(f))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str, auth: Auth<'_>) -> Answer {
        self.send("GET", uri, auth, &[], None).await
    }

    /// A form POST as a browser sends it from the console's own page.
    async fn post(&self, uri: &str, auth: Auth<'_>, fields: &[(&str, &str)]) -> Answer {
        self.send(
            "POST",
            uri,
            auth,
            &[
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ],
            Some(form(fields)),
        )
        .await
    }

    /// The demo's request in `session`, run until it pauses for `send_mail`'s approval.
    async fn paused_demo(&self, session: &str, input: &str) -> (Request, Approval) {
        let r = self
            .h
            .request(Some(SessionId::parse(session).unwrap()), "assistant", input)
            .await
            .unwrap();
        let r = run_until_settled(&self.h, &r.id, fast()).await.unwrap();
        assert_eq!(r.status, RequestStatus::WaitingApproval);
        let a = self.pending(&r.id).await.expect("a pending approval");
        (r, a)
    }

    async fn pending(&self, request: &RequestId) -> Option<Approval> {
        self.h
            .list_approvals(ApprovalFilter {
                statuses: vec![ApprovalStatus::Pending],
                request_id: Some(request.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .next()
    }
}

fn fast() -> WorkerOptions {
    WorkerOptions {
        poll: Duration::from_millis(20),
        ..Default::default()
    }
}

fn assert_html(a: &Answer, status: StatusCode) {
    assert_eq!(a.status, status, "{}", a.text);
    let ct = a.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(ct.starts_with("text/html"), "{ct}");
    let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
}

/// The number of `<form>`s posting to the approval decision route.
fn decision_forms(text: &str) -> usize {
    text.matches("action=\"/console/approvals/").count()
}

#[tokio::test]
async fn pages_show_the_engine_facts_escaped_and_viewers_get_no_forms() {
    let c = console(tokens());
    let (req, apr) = c
        .paused_demo("s-pages", "ship <script>alert(1)</script> notes")
        .await;

    let o = c.get("/console", Auth::Bearer(VIEWER)).await;
    assert_html(&o, StatusCode::OK);
    for says in [
        "1 pending",
        req.id.as_str(),
        "assistant → researcher",
        "waiting_approval",
        "0 queued / 1000 capacity",
        "signed in as <b class=\"principal\">vera</b> (viewer)",
    ] {
        assert!(
            o.text.contains(says),
            "overview should say {says:?}:\n{}",
            o.text
        );
    }
    // The page's live stream starts after the last event it shows.
    let seq = c.h.store().last_seq().await.unwrap();
    assert!(
        o.text.contains(&format!("data-seq=\"{seq}\"")),
        "{}",
        o.text
    );
    assert!(o.text.contains("data-events=\"/v1/events\""));

    let a = c.get("/console/approvals", Auth::Bearer(VIEWER)).await;
    assert_html(&a, StatusCode::OK);
    for says in [
        apr.id.as_str(),
        "send_mail",
        "tool policy (approval: required)",
        "&quot;to&quot;: &quot;ops@example.com&quot;",
        req.id.as_str(),
    ] {
        assert!(
            a.text.contains(says),
            "approvals should say {says:?}:\n{}",
            a.text
        );
    }
    assert_eq!(decision_forms(&a.text), 0, "a viewer sees no forms");
    let a = c.get("/console/approvals", Auth::Bearer(OPERATOR)).await;
    assert_eq!(
        decision_forms(&a.text),
        2,
        "approve/reject and edit:\n{}",
        a.text
    );
    assert!(a.text.contains(">Approve</button>") && a.text.contains(">Reject</button>"));

    let t = c
        .get(
            &format!("/console/requests/{}", req.id),
            Auth::Bearer(VIEWER),
        )
        .await;
    assert_html(&t, StatusCode::OK);
    let child =
        c.h.list_requests(RequestFilter {
            parent_id: Some(req.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    for says in [
        "data-status=\"waiting_approval\"",
        "delegated <a class=\"id\" href=\"/console/requests/",
        child[0].id.as_str(),
        "write_file",
        "waiting for approval",
        "ship &lt;script&gt;alert(1)&lt;/script&gt; notes",
    ] {
        assert!(
            t.text.contains(says),
            "the timeline should say {says:?}:\n{}",
            t.text
        );
    }
    assert!(!t.text.contains("<script>alert"), "escaped");
    assert!(!t.text.contains("traceparent"), "admitted without one");
    assert!(t.text.contains(&format!(
        "data-events=\"/v1/events?session={}\"",
        req.session_id
    )));
    assert_eq!(decision_forms(&t.text), 0);
    let t = c
        .get(
            &format!("/console/requests/{}", req.id),
            Auth::Bearer(OPERATOR),
        )
        .await;
    assert_eq!(
        decision_forms(&t.text),
        2,
        "the pending approval is decided in place too"
    );

    let hp = c.get("/console/health", Auth::Bearer(VIEWER)).await;
    assert_html(&hp, StatusCode::OK);
    let report = c.h.health().await.unwrap();
    for check in &report.checks {
        assert!(
            hp.text.contains(&format!("data-check=\"{}\"", check.name)),
            "{}",
            check.name
        );
    }
    // Failing checks first: no worker runs, so `worker` is not ok and precedes `store`.
    let worst = report.checks.iter().max_by_key(|c| c.status).unwrap();
    if worst.status != HealthStatus::Ok {
        let pos = |n: &str| hp.text.find(&format!("data-check=\"{n}\"")).unwrap();
        for ok in report
            .checks
            .iter()
            .filter(|c| c.status == HealthStatus::Ok)
        {
            assert!(
                pos(&worst.name) < pos(&ok.name),
                "{} before {}",
                worst.name,
                ok.name
            );
        }
    }

    // A viewer's decision is refused (403) and changes nothing.
    let r = c
        .post(
            &format!("/console/approvals/{}", apr.id),
            Auth::Bearer(VIEWER),
            &[("decision", "approve"), ("message", "ok")],
        )
        .await;
    assert_html(&r, StatusCode::FORBIDDEN);
    assert!(
        r.text.contains("has role viewer; this needs operator"),
        "{}",
        r.text
    );
    assert!(c.pending(&req.id).await.is_some());

    // Unknown records: a page saying so with the API's status.
    let missing = c
        .get(
            "/console/requests/req_01jxxxxxxxxxxxxxxxxxxxxxxx",
            Auth::Bearer(VIEWER),
        )
        .await;
    assert!(
        matches!(
            missing.status,
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST
        ),
        "{}",
        missing.status
    );
    assert!(missing.text.contains("id=\"refusal\""), "{}", missing.text);
}

#[tokio::test]
async fn an_operator_decides_by_form_and_refusals_show_the_engine_message() {
    let c = console(tokens());
    let (req, apr) = c.paused_demo("s-decide", "ship the notes").await;
    let uri = format!("/console/approvals/{}", apr.id);

    // Invalid JSON: refused on the page, what was typed kept.
    let r = c
        .post(
            &uri,
            Auth::Bearer(OPERATOR),
            &[
                ("decision", "edit"),
                ("arguments", "{\"to\": oops"),
                ("message", "typed note"),
            ],
        )
        .await;
    assert_html(&r, StatusCode::BAD_REQUEST);
    assert!(
        r.text.contains("the edited arguments are not valid JSON"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("{&quot;to&quot;: oops"),
        "the typed arguments are kept:\n{}",
        r.text
    );
    assert!(
        r.text.contains(">typed note</textarea>"),
        "the typed message is kept"
    );
    // Arguments the tool's schema refuses: the engine's message.
    let r = c
        .post(
            &uri,
            Auth::Bearer(OPERATOR),
            &[
                ("decision", "edit"),
                ("arguments", "{\"to\": 42, \"subject\": \"x\"}"),
            ],
        )
        .await;
    assert_html(&r, StatusCode::BAD_REQUEST);
    assert!(
        r.text.contains("invalid arguments for `send_mail`"),
        "{}",
        r.text
    );
    assert!(c.pending(&req.id).await.is_some(), "nothing was decided");

    // Approve with a message: recorded under the token's name, then the request's page.
    let r = c
        .post(
            &uri,
            Auth::Bearer(OPERATOR),
            &[("decision", "approve"), ("message", "looks right")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/console/requests/{}", req.id)
    );
    let a = c.h.store().get_approval(&apr.id).await.unwrap();
    assert_eq!(a.status, ApprovalStatus::Approved);
    assert_eq!(a.decided_by.as_deref(), Some("otto"));
    assert_eq!(a.message.as_deref(), Some("looks right"));

    // Deciding again: the engine's refusal on the page (409), not a 500.
    let r = c
        .post(&uri, Auth::Bearer(OPERATOR), &[("decision", "reject")])
        .await;
    assert_html(&r, StatusCode::CONFLICT);
    assert!(
        r.text.contains("is already approved (decided by otto"),
        "{}",
        r.text
    );

    let done = run_until_settled(&c.h, &req.id, fast()).await.unwrap();
    assert_eq!(done.status, RequestStatus::Completed);
    let t = c
        .get(
            &format!("/console/requests/{}", req.id),
            Auth::Bearer(VIEWER),
        )
        .await;
    for says in [
        "data-status=\"completed\"",
        "by <b class=\"decided-by\">otto</b>",
        "“looks right”",
        "summary.md",
        "href=\"/v1/artifacts/",
    ] {
        assert!(
            t.text.contains(says),
            "the timeline should say {says:?}:\n{}",
            t.text
        );
    }
    let a = c.get("/console/approvals", Auth::Bearer(VIEWER)).await;
    assert!(a.text.contains("nothing waits for a decision"));
    assert!(a.text.contains("looks right"));
}

#[tokio::test]
async fn login_sets_a_strict_httponly_cookie_that_authenticates_pages_and_the_api() {
    let c = console(tokens());
    let (_, apr) = c.paused_demo("s-login", "ship the notes").await;

    // A browser without a session goes to the login page, and back after.
    let r = c.get("/console/approvals", Auth::None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers[header::LOCATION],
        "/console/login?next=/console/approvals"
    );
    let r = c
        .post(
            &format!("/console/approvals/{}", apr.id),
            Auth::None,
            &[("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers[header::LOCATION],
        "/console/login?next=/console/approvals"
    );
    let r = c.get("/", Auth::None).await;
    assert_eq!(r.headers[header::LOCATION], "/console");
    let page = c
        .get("/console/login?next=/console/approvals", Auth::None)
        .await;
    assert_html(&page, StatusCode::OK);
    assert!(
        page.text
            .contains("name=\"next\" value=\"/console/approvals\"")
    );

    let r = c
        .post(
            "/console/login",
            Auth::None,
            &[("token", "wrong"), ("next", "/console/approvals")],
        )
        .await;
    assert_html(&r, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("the token is not one this server knows"));
    assert_eq!(
        r.headers[header::WWW_AUTHENTICATE],
        harness_server::WWW_AUTHENTICATE
    );
    assert!(!r.headers.contains_key(header::SET_COOKIE));

    // `next` elsewhere than the console is ignored.
    let r = c
        .post(
            "/console/login",
            Auth::None,
            &[("token", OPERATOR), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/console");
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(
        !set.contains(OPERATOR),
        "the cookie does not carry the token in clear: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();

    let o = c.get("/console", Auth::Cookie(&cookie)).await;
    assert_html(&o, StatusCode::OK);
    assert!(
        o.text
            .contains("signed in as <b class=\"principal\">otto</b> (operator)")
    );
    // The JSON API and the event stream take the cookie too (EventSource sends no header).
    let api = c.get("/v1/overview", Auth::Cookie(&cookie)).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    // A stream never ends by itself: its status and type, without reading it.
    let req = HttpRequest::builder()
        .uri("/v1/events?from=0")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let ev = c.app.clone().oneshot(req).await.unwrap();
    assert_eq!(ev.status(), StatusCode::OK);
    assert_eq!(ev.headers()[header::CONTENT_TYPE], "text/event-stream");

    // A cross-site POST carrying the cookie is refused, and decides nothing.
    for (k, v) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = c
            .send(
                "POST",
                &format!("/console/approvals/{}", apr.id),
                Auth::Cookie(&cookie),
                &[(k, v)],
                Some(form(&[("decision", "approve")])),
            )
            .await;
        assert_html(&r, StatusCode::FORBIDDEN);
        assert!(
            r.text.contains("refused a cross-site request"),
            "{}",
            r.text
        );
        let r = c
            .send(
                "POST",
                &format!("/v1/approvals/{}/resolve", apr.id),
                Auth::Cookie(&cookie),
                &[(k, v), ("content-type", "application/json")],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    let a = c.h.store().get_approval(&apr.id).await.unwrap();
    assert_eq!(a.status, ApprovalStatus::Pending);

    // The same form from the console's own page decides it.
    let r = c
        .post(
            &format!("/console/approvals/{}", apr.id),
            Auth::Cookie(&cookie),
            &[("decision", "reject"), ("message", "not today")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let a = c.h.store().get_approval(&apr.id).await.unwrap();
    assert_eq!(
        (a.status, a.decided_by.as_deref()),
        (ApprovalStatus::Rejected, Some("otto"))
    );

    // Logout clears the cookie.
    let r = c.post("/console/logout", Auth::Cookie(&cookie), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let clear = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(clear.contains("Max-Age=0"), "{clear}");

    // A session cookie holding an unknown token is not a session.
    let r = c
        .get("/v1/overview", Auth::Cookie("agent_harness_token=6e6f7065"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_open_server_needs_no_login_but_still_refuses_cross_site_posts() {
    let c = console(Tokens::open());
    let (req, apr) = c.paused_demo("s-open", "ship the notes").await;
    let o = c.get("/console", Auth::None).await;
    assert_html(&o, StatusCode::OK);
    assert!(o.text.contains("open server (no tokens)"), "{}", o.text);
    let login = c.get("/console/login", Auth::None).await;
    assert!(login.text.contains("needs no login"));

    let r = c
        .send(
            "POST",
            &format!("/console/approvals/{}", apr.id),
            Auth::None,
            &[("origin", "http://evil.example")],
            Some(form(&[("decision", "approve")])),
        )
        .await;
    assert_html(&r, StatusCode::FORBIDDEN);
    assert!(c.pending(&req.id).await.is_some());

    let r = c
        .post(
            &format!("/console/approvals/{}", apr.id),
            Auth::None,
            &[("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let a = c.h.store().get_approval(&apr.id).await.unwrap();
    assert_eq!(a.decided_by.as_deref(), Some("anonymous"));
}

#[tokio::test]
async fn an_operator_cancels_and_retries_from_the_request_page_and_refusals_stay_on_it() {
    let c = console(tokens());
    let (req, _) = c.paused_demo("s-actions", "ship the notes").await;
    let page = format!("/console/requests/{}", req.id);
    let cancel = format!("{page}/cancel");
    let retry = format!("{page}/retry");

    // A viewer sees neither action and may not post one.
    let v = c.get(&page, Auth::Bearer(VIEWER)).await;
    assert_html(&v, StatusCode::OK);
    assert!(!v.text.contains("/cancel\""), "{}", v.text);
    let r = c
        .post(&cancel, Auth::Bearer(VIEWER), &[("reason", "no")])
        .await;
    assert_html(&r, StatusCode::FORBIDDEN);
    // Another site may not post one for an operator either.
    let r = c
        .send(
            "POST",
            &cancel,
            Auth::Bearer(OPERATOR),
            &[("origin", "http://evil.example")],
            Some(form(&[("reason", "csrf")])),
        )
        .await;
    assert_html(&r, StatusCode::FORBIDDEN);
    assert_eq!(
        c.h.store().get_request(&req.id).await.unwrap().status,
        RequestStatus::WaitingApproval
    );

    // The operator's page offers cancel (not retry) while the request is unfinished.
    let o = c.get(&page, Auth::Bearer(OPERATOR)).await;
    assert!(
        o.text.contains(&format!("action=\"{cancel}\"")),
        "{}",
        o.text
    );
    assert!(!o.text.contains(&format!("action=\"{retry}\"")));
    // Retrying an unfinished request: the engine's refusal on the page.
    let r = c.post(&retry, Auth::Bearer(OPERATOR), &[]).await;
    assert_html(&r, StatusCode::CONFLICT);
    assert!(r.text.contains("id=\"refusal\""), "{}", r.text);

    let r = c
        .post(
            &cancel,
            Auth::Bearer(OPERATOR),
            &[("reason", "wrong <list>")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.headers[header::LOCATION], page);
    let done = c.h.store().get_request(&req.id).await.unwrap();
    assert_eq!(done.status, RequestStatus::Cancelled);
    let events =
        c.h.store()
            .events_after(
                0,
                EventFilter {
                    request_id: Some(req.id.clone()),
                    ..Default::default()
                },
                100,
            )
            .await
            .unwrap();
    let cancelled = events
        .iter()
        .find(|e| e.kind == EventKind::RequestCancelled)
        .expect("a request.cancelled event");
    assert_eq!(cancelled.payload["by"], "otto");
    assert_eq!(cancelled.payload["by_kind"], "token");
    assert_eq!(cancelled.payload["reason"], "wrong <list>");

    // Cancelling again is refused on the page; now it offers retry.
    let r = c.post(&cancel, Auth::Bearer(OPERATOR), &[]).await;
    assert_html(&r, StatusCode::CONFLICT);
    assert!(r.text.contains("id=\"refusal\""), "{}", r.text);
    assert!(
        r.text.contains(&format!("action=\"{retry}\"")),
        "{}",
        r.text
    );

    let r = c.post(&retry, Auth::Bearer(OPERATOR), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let to = r.headers[header::LOCATION].to_str().unwrap().to_string();
    let new_id = RequestId::parse(to.strip_prefix("/console/requests/").unwrap()).unwrap();
    assert_ne!(new_id, req.id);
    let again = c.h.store().get_request(&new_id).await.unwrap();
    assert_eq!(again.retry_of.as_ref(), Some(&req.id));
    assert_eq!(again.input, req.input);
}

#[tokio::test]
async fn the_request_page_shows_the_traceparent_it_was_admitted_with() {
    let c = console(tokens());
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req =
        c.h.admit(harness_engine::Admit {
            agent: "assistant".into(),
            input: "traced".into(),
            traceparent: Some(header.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .request;
    let t = c
        .get(
            &format!("/console/requests/{}", req.id),
            Auth::Bearer(VIEWER),
        )
        .await;
    assert_html(&t, StatusCode::OK);
    assert!(
        t.text.contains(&format!(
            "<dt>traceparent</dt><dd><code>{header}</code></dd>"
        )),
        "{}",
        t.text
    );
}
