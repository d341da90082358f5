//! `runtime migrate-store --to postgres` on the demo workspace: the real binary
//! copies its SQLite store into a fresh PostgreSQL schema and says it verified the
//! copy; with `backend: postgres`, the views list the same requests; a second run
//! into the same schema is refused (exit 3). Needs `AGENT_HARNESS_TEST_DATABASE_URL`.

mod common;

use common::{Demo, T3};
use harness_store::testing::{TEST_DATABASE_URL, TestSchema};

#[test]
fn the_demo_store_moves_to_postgres_and_lists_the_same_requests() {
    // Dropped (with everything in it) when the test ends.
    let Some(test_schema) = TestSchema::new() else {
        return;
    };
    let schema = test_schema.config.schema.clone();
    let demo = Demo::new();
    let p = demo.approved();
    demo.at(
        T3,
        &[
            "request",
            "--agent",
            "assistant",
            "--session",
            "s2",
            "later",
        ],
    )
    .ok();
    let list = |demo: &Demo| {
        demo.at(T3, &["runtime", "requests", "list", "--json"])
            .ok()
            .json()
    };
    let before = list(&demo);
    assert_eq!(before["requests"].as_array().unwrap().len(), 2, "{before}");

    let args = [
        "runtime",
        "migrate-store",
        "--to",
        "postgres",
        "--url-env",
        TEST_DATABASE_URL,
        "--schema",
        &schema,
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = demo.at(T3, &json_args).ok();
    let doc = out.json();
    assert_eq!(doc["verified"], true, "{doc}");
    let tables = doc["tables"].as_array().unwrap();
    let requests = tables.iter().find(|t| t["table"] == "requests").unwrap();
    assert!(requests["source_rows"].as_u64().unwrap() >= 2, "{requests}");
    assert_eq!(requests["source_rows"], requests["target_rows"]);
    assert_eq!(requests["source_sha256"], requests["target_sha256"]);
    assert!(doc["next"].as_str().unwrap().contains("backend: postgres"));
    let url = std::env::var(TEST_DATABASE_URL).unwrap();
    assert!(!out.stdout.contains(&url), "the URL is never printed");

    // Again into the same schema: refused, nothing changed.
    let again = demo.at(T3, &args).expect(3);
    assert!(
        again.stderr.contains("the target is not empty"),
        "{}",
        again.stderr
    );

    // Switch the workspace over: the same requests, read from PostgreSQL.
    std::fs::write(
        demo.root.join("config/stores.yaml"),
        format!(
            "backend: postgres\npostgres:\n  url_env: {TEST_DATABASE_URL}\n  schema: {schema}\n"
        ),
    )
    .unwrap();
    let after = list(&demo);
    assert_eq!(before, after);
    let show = demo
        .at(T3, &["runtime", "requests", "show", &p.request, "--json"])
        .ok()
        .json();
    assert_eq!(show["request"]["status"], "completed", "{show}");
}
