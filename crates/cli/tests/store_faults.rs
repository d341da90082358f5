//! The store under faults, end to end through the binary: maintenance beside a
//! running worker.

mod common;
mod worker;

use common::{BIN, Demo};
use harness_engine::Harness;
use std::process::Command;
use worker::{serve, terminate, wait_for_holder};

fn maintenance(demo: &Demo, extra: &[&str]) -> common::Run {
    let mut args = vec!["runtime", "maintenance", "--older-than", "0s", "--json"];
    args.extend_from_slice(extra);
    demo.run(&args)
}

#[test]
fn vacuum_is_refused_while_a_worker_serves_and_pruning_is_not() {
    let demo = Demo::new();
    demo.approved();
    let h = Harness::inspect(&demo.root).unwrap();
    let child = serve(&demo.root);
    wait_for_holder(&h, child.id());

    let refused = maintenance(&demo, &["--vacuum"]).expect(3);
    assert!(
        refused.stderr.contains("--vacuum") && refused.stderr.contains("stop it first"),
        "{}",
        refused.stderr
    );
    let pruned = maintenance(&demo, &[]).ok().json();
    assert!(pruned["requests"].as_u64().unwrap() > 0, "{pruned}");
    assert_eq!(pruned["vacuum"], false);
    terminate(child);

    // With no worker running, --vacuum compacts.
    let vacuumed = maintenance(&demo, &["--vacuum"]).ok().json();
    assert_eq!(vacuumed["vacuum"], true);
    let health = Command::new(BIN)
        .args(["runtime", "health", "--workspace"])
        .arg(&demo.root)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("integrity ok"),
        "{health:?}"
    );
}
