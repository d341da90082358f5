//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the records' schemas (harness-core's `openapi` feature derives
//! them from the same types serde writes), served at `GET /openapi.json` and
//! rendered by [`docs`] as a plain HTML reference page at `GET /docs` (no script,
//! nothing fetched from elsewhere). Both are served without a token: the document
//! holds no data.
//!
//! Conventions the document keeps (the tests check them): every operation's
//! description starts with `Role: ROLE.` (the least role its token needs) or
//! `No token.`; every operation needing a role has the bearer security requirement
//! and the 401 (with its `WWW-Authenticate` header), 403, 500 and 503 answers, added
//! here once rather than on each handler.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use harness_core::ErrorCode;
use serde_json::Value;
use std::fmt::Write;
use std::sync::OnceLock;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder, SecurityRequirement};
use utoipa::{OpenApi, ToSchema};

/// Every error's body: the engine's stable code and a message for people.
#[derive(serde::Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agent-harness HTTP API",
        description = "The HTTP API of `agent-harness serve --listen`: a thin view over the \
            workspace's durable records (requests, sessions, approvals, artifacts, events). \
            Every error is `{\"code\", \"message\"}` with a stable code. Tokens \
            (`config/server.yaml`) carry a role, `viewer` < `operator` < `admin`, sent as \
            `Authorization: Bearer TOKEN`; a server with no tokens configured is open.",
        license(name = "Apache-2.0"),
    ),
    paths(
        crate::health,
        crate::overview,
        crate::list_sessions,
        crate::admit,
        crate::list_requests,
        crate::get_request,
        crate::request_tree,
        crate::cancel,
        crate::retry,
        crate::evidence::resume,
        crate::evidence::list,
        crate::evidence::export,
        crate::evidence::download,
        crate::list_approvals,
        crate::resolve,
        crate::events::events,
        crate::metrics::metrics,
        openapi_json,
        docs,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Conventions),
)]
struct ApiDoc;

/// The bearer scheme, and on every operation needing a role its requirement and
/// the answers any such operation may give.
struct Conventions;

/// The security scheme's name in the document.
const BEARER: &str = "bearer";

impl utoipa::Modify for Conventions {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        api.components.get_or_insert_default().add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of `config/server.yaml`; its role (viewer < operator < admin) \
                         decides what it may do",
                    ))
                    .build(),
            ),
        );
        let common = [
            (
                "401",
                "No token, or one this server does not know (when tokens are configured)",
            ),
            ("403", "The token's role is below the one this needs"),
            ("500", "An unexpected failure (logged by the server)"),
            (
                "503",
                "The store cannot be reached now; the same call may succeed later",
            ),
        ];
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                optional_body_is_absent(op);
                if role_of(op.description.as_deref().unwrap_or("")).is_none() {
                    continue;
                }
                op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
                for (status, description) in common {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| {
                            let mut r = error_response(description);
                            if status == "401" {
                                r.headers.insert(
                                    "WWW-Authenticate".into(),
                                    HeaderBuilder::new()
                                        .schema(
                                            ObjectBuilder::new()
                                                .schema_type(utoipa::openapi::Type::String),
                                        )
                                        .description(Some(format!(
                                            "`{}` (RFC 6750)",
                                            crate::WWW_AUTHENTICATE
                                        )))
                                        .build(),
                                );
                            }
                            RefOr::T(r)
                        });
                }
            }
        }
    }
}

/// An optional body (`Option<T>`) is an absent one, not a JSON `null`: its schema
/// is `T`'s, and the body not required.
fn optional_body_is_absent(op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::schema::Schema;
    let Some(body) = op.request_body.as_mut() else {
        return;
    };
    if body.required == Some(utoipa::openapi::Required::True) {
        return;
    }
    for content in body.content.values_mut() {
        if let Some(RefOr::T(Schema::OneOf(one))) = &content.schema {
            let not_null: Vec<_> = one
                .items
                .iter()
                .filter(|s| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::Type::Null)))
                .cloned()
                .collect();
            if let [only] = &not_null[..] {
                content.schema = Some(only.clone());
            }
        }
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                ))))
                .build(),
        )
        .build()
}

/// The role an operation's description names (`Role: viewer. …`), if any.
pub(crate) fn role_of(description: &str) -> Option<&str> {
    let rest = description.strip_prefix("Role: ")?;
    rest.split('.').next()
}

/// This API's OpenAPI 3.1 document.
pub fn spec() -> &'static utoipa::openapi::OpenApi {
    static SPEC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut api = ApiDoc::openapi();
        api.info.version = env!("CARGO_PKG_VERSION").to_string();
        api
    })
}

fn spec_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| spec().to_pretty_json().expect("the document serializes"))
}

#[utoipa::path(get, path = "/openapi.json", tag = "reference",
    description = "No token. This API's OpenAPI 3.1 document, generated from the server's code.",
    security(()),
    responses((status = 200, description = "The document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        spec_json(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/docs", tag = "reference",
    description = "No token. This API's reference: the OpenAPI document as an HTML page.",
    security(()),
    responses((status = 200, description = "The page", content_type = "text/html; charset=utf-8", body = String)))]
pub(crate) async fn docs() -> Response {
    static PAGE: OnceLock<String> = OnceLock::new();
    let page = PAGE
        .get_or_init(|| render(&serde_json::from_str(spec_json()).expect("the document is JSON")));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // Plain HTML and an inline style: nothing else may load or run.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            ),
        ],
        page.as_str(),
    )
        .into_response()
}

/// The methods an operation may have, in the order the page lists them.
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The operations of a document as `(METHOD, path, operation)`, in path order.
pub(crate) fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for m in METHODS {
                if let Some(op) = item.get(m) {
                    out.push((m.to_uppercase(), path.clone(), op));
                }
            }
        }
    }
    out
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Text with `code spans` as `<code>`.
fn prose(s: &str) -> String {
    let mut o = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(o, "<code>{}</code>", esc(part));
        } else {
            o.push_str(&esc(part));
        }
    }
    o
}

/// The anchor of an operation.
fn op_anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("op-{}{}", method.to_ascii_lowercase(), slug)
}

/// A schema as a short type, with links to named schemas.
fn type_html(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = s[key].as_array() {
            let sep = if key == "allOf" { " &amp; " } else { " | " };
            return alts.iter().map(type_html).collect::<Vec<_>>().join(sep);
        }
    }
    if let Some(values) = s["enum"].as_array() {
        return values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let types: Vec<String> = match &s["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return "any".into();
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!("array of {}", type_html(&s["items"])),
            t => {
                let mut o = esc(t);
                if let Some(f) = s["format"].as_str() {
                    let _ = write!(o, " ({})", esc(f));
                }
                let (min, max) = (&s["minimum"], &s["maximum"]);
                if !min.is_null() || !max.is_null() {
                    let _ = write!(
                        o,
                        " {}..{}",
                        if min.is_null() {
                            String::new()
                        } else {
                            min.to_string()
                        },
                        if max.is_null() {
                            String::new()
                        } else {
                            max.to_string()
                        }
                    );
                }
                o
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The reference page of a document.
pub(crate) fn render(doc: &Value) -> String {
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t} <small>{v}</small></h1>\n\
         <p>{d}</p>\n<p>The machine-readable document: <a href=\"openapi.json\">openapi.json</a> (OpenAPI {ov}).</p>\n",
        t = esc(title),
        v = esc(doc["info"]["version"].as_str().unwrap_or("")),
        d = prose(doc["info"]["description"].as_str().unwrap_or("")),
        ov = esc(doc["openapi"].as_str().unwrap_or("")),
    );
    let ops = operations(doc);
    o.push_str("<h2>Operations</h2>\n<table><tr><th>Method</th><th>Path</th><th>Role</th></tr>\n");
    for (m, p, op) in &ops {
        let desc = op["description"].as_str().unwrap_or("");
        let _ = writeln!(
            o,
            "<tr><td><code>{m}</code></td><td><a href=\"#{a}\"><code>{p}</code></a></td><td>{r}</td></tr>",
            a = op_anchor(m, p),
            p = esc(p),
            r = esc(role_of(desc).unwrap_or("none")),
        );
    }
    o.push_str("</table>\n");
    for (m, p, op) in &ops {
        let desc = op["description"].as_str().unwrap_or("");
        let _ = writeln!(
            o,
            "<section id=\"{a}\"><h2><code>{m} {p}</code></h2>\n<p class=\"role\">Role: <b>{r}</b></p>\n<p>{d}</p>",
            a = op_anchor(m, p),
            p = esc(p),
            r = esc(role_of(desc).unwrap_or("none (no token)")),
            d = prose(desc),
        );
        if let Some(params) = op["parameters"].as_array() {
            o.push_str("<h3>Parameters</h3>\n<table><tr><th>Name</th><th>In</th><th>Required</th><th>Type</th><th>Description</th></tr>\n");
            for prm in params {
                let _ = writeln!(
                    o,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(prm["name"].as_str().unwrap_or("")),
                    esc(prm["in"].as_str().unwrap_or("")),
                    if prm["required"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    type_html(&prm["schema"]),
                    prose(prm["description"].as_str().unwrap_or("")),
                );
            }
            o.push_str("</table>\n");
        }
        if let Some(body) = op["requestBody"].as_object() {
            let _ = writeln!(
                o,
                "<h3>Request body{}</h3>",
                if body.get("required").and_then(Value::as_bool) == Some(true) {
                    ""
                } else {
                    " (optional)"
                }
            );
            if let Some(d) = body.get("description").and_then(Value::as_str) {
                let _ = writeln!(o, "<p>{}</p>", prose(d));
            }
            o.push_str("<ul>\n");
            for (ct, c) in body
                .get("content")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let _ = writeln!(
                    o,
                    "<li><code>{}</code>: {}</li>",
                    esc(ct),
                    type_html(&c["schema"])
                );
            }
            o.push_str("</ul>\n");
        }
        o.push_str("<h3>Responses</h3>\n<table><tr><th>Status</th><th>Description</th><th>Body</th><th>Headers</th></tr>\n");
        for (status, r) in op["responses"].as_object().into_iter().flatten() {
            let body: Vec<String> = r["content"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(ct, c)| format!("<code>{}</code>: {}", esc(ct), type_html(&c["schema"])))
                .collect();
            let headers: Vec<String> = r["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(h, v)| {
                    format!(
                        "<code>{}</code>: {}",
                        esc(h),
                        prose(v["description"].as_str().unwrap_or(""))
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                prose(r["description"].as_str().unwrap_or("")),
                body.join("<br>"),
                headers.join("<br>"),
            );
        }
        o.push_str("</table></section>\n");
    }
    o.push_str("<h2>Schemas</h2>\n");
    for (name, s) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(o, "<section id=\"schema-{n}\"><h3>{n}</h3>", n = esc(name));
        if let Some(d) = s["description"].as_str() {
            let _ = writeln!(o, "<p>{}</p>", prose(d));
        }
        schema_body(&mut o, s);
        o.push_str("</section>\n");
    }
    o.push_str("</body></html>\n");
    o
}

/// A named schema's fields (an object), variants (`oneOf`) or type.
fn schema_body(o: &mut String, s: &Value) {
    if let Some(props) = s["properties"].as_object() {
        let required: Vec<&str> = s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        o.push_str(
            "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>\n",
        );
        for (field, f) in props {
            let _ = writeln!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(field),
                type_html(f),
                if required.contains(&field.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                prose(f["description"].as_str().unwrap_or("")),
            );
        }
        o.push_str("</table>\n");
        if s["additionalProperties"] == Value::Bool(false) {
            o.push_str("<p>No other field is accepted.</p>\n");
        }
    } else if let Some(alts) = s["oneOf"].as_array() {
        o.push_str("<p>One of:</p>\n");
        for alt in alts {
            schema_body(o, alt);
        }
    } else {
        let _ = writeln!(o, "<p>{}</p>", type_html(s));
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.4}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
code{background:#f3f3f3;padding:0 .2rem}section{border-top:1px solid #ddd;margin-top:1.5rem}small{color:#666}.role{margin:.25rem 0}";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The `(METHOD, path)` pairs the router in `lib.rs` serves, read from its
    /// `.route("PATH", get(…).post(…))` calls: a route added there without an
    /// annotation fails [`the_document_lists_exactly_the_routers_routes`].
    fn router_routes() -> BTreeSet<(String, String)> {
        let src = include_str!("lib.rs");
        let start = src.find("Router::new()").expect("the router");
        let end = start + src[start..].find(".fallback(").expect("its fallback");
        let mut out = BTreeSet::new();
        for call in src[start..end].split(".route(").skip(1) {
            let path = call.split('"').nth(1).expect("a path literal");
            let handlers = call.split_once(',').expect("a method router").1;
            let mut found = false;
            for m in METHODS {
                let mut rest = handlers;
                while let Some(i) = rest.find(&format!("{m}(")) {
                    let before = rest[..i].chars().last();
                    if before.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':') {
                        out.insert((m.to_uppercase(), path.to_string()));
                        found = true;
                    }
                    rest = &rest[i + m.len()..];
                }
            }
            assert!(found, "no method found for route {path}");
        }
        out
    }

    #[test]
    fn the_document_lists_exactly_the_routers_routes() {
        let doc: Value = serde_json::from_str(spec_json()).unwrap();
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let served = router_routes();
        assert!(served.len() >= 17, "{served:?}");
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "served but not documented: {missing:?}; documented but not served: {extra:?}"
        );
    }

    #[test]
    fn every_operation_names_its_role_and_its_errors() {
        let doc: Value = serde_json::from_str(spec_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for (m, p, op) in operations(&doc) {
            let desc = op["description"].as_str().unwrap_or("");
            let ok_status = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|s| s.starts_with('2'));
            assert!(ok_status, "{m} {p} has no success answer");
            match role_of(desc) {
                Some(role) => {
                    assert!(
                        ["viewer", "operator", "admin"].contains(&role),
                        "{m} {p}: role {role}"
                    );
                    assert_eq!(
                        op["security"],
                        serde_json::json!([{"bearer": []}]),
                        "{m} {p}"
                    );
                    for s in ["401", "403", "500", "503"] {
                        assert_eq!(
                            op["responses"][s]["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{m} {p} {s}"
                        );
                    }
                    let challenge = &op["responses"]["401"]["headers"]["WWW-Authenticate"];
                    assert_eq!(challenge["schema"]["type"], "string", "{m} {p}");
                    assert!(
                        challenge["description"]
                            .as_str()
                            .is_some_and(|d| d.contains(crate::WWW_AUTHENTICATE)),
                        "{m} {p}: {challenge}"
                    );
                }
                None => {
                    assert!(desc.starts_with("No token."), "{m} {p}: {desc}");
                    assert_eq!(op["security"], serde_json::json!([{}]), "{m} {p}");
                }
            }
            // Every error answer carries the error body.
            for (s, r) in op["responses"].as_object().unwrap() {
                if s.starts_with('4') || s.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{m} {p} {s}"
                    );
                }
            }
        }
    }
}
