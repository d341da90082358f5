//! Helpers for tests that run `agent-harness serve` as a real process.

#![allow(dead_code)]

use harness_engine::Harness;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-harness");

/// `agent-harness serve` on `root`, its output discarded.
pub fn serve(root: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", "--workspace"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve")
}

/// Waits until `pid` holds the workspace (its signal handlers are installed by then).
pub fn wait_for_holder(h: &Harness, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.worker_holder().map(|w| w.pid) != Some(pid) {
        assert!(Instant::now() < deadline, "serve never took the workspace");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL: the crash under test.
pub fn kill9(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// SIGTERM, and the graceful stop must succeed.
pub fn terminate(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait for serve");
    assert!(status.success(), "graceful stop after SIGTERM: {status:?}");
}
