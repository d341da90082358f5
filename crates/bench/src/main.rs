//! `agent-harness-bench`: the runtime's benchmark figures (issue 3's and issue 4's
//! "Benchmarks" sections), printed as plain lines. Run in release mode:
//!
//! ```text
//! cargo run --release -p harness-bench -- all
//! ```
//!
//! Every bench builds its own workspace in a temp folder (`$AGENT_HARNESS_BENCH_DIR`
//! or the system temp dir) with the scripted model at zero latency, so only the
//! runtime's cost is measured. `all` runs each bench in its own child process, so
//! peak-memory figures do not leak from one bench into the next.

// Measured with the allocator the shipped binary uses.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod approval;
mod breakdown;
mod claims;
mod concurrent;
mod http_load;
mod mcp;
mod models;
mod paused;
mod pg_workers;
mod postgres;
mod recovery;
mod single;
mod storage;
mod util;
mod views;
mod workspace;

use anyhow::{Result, bail};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

const BENCHES: &[(&str, &str)] = &[
    (
        "single",
        "µs per durable step, one session of 1,000 steps, synchronous NORMAL and FULL [--only normal|full]",
    ),
    (
        "concurrent",
        "aggregate steps/s, 1,000 concurrent sessions × 10 steps, and peak RSS [--only normal|full]",
    ),
    (
        "claims",
        "claim latency p50/p99 and steps/s with 10,000 requests queued across 100 sessions",
    ),
    (
        "storage",
        "bytes stored per step after sessions of 100, 1,000 and 5,000 steps",
    ),
    (
        "recovery",
        "restart to all of 1,000 in-flight requests resumed after SIGKILL [--latency-ms N]",
    ),
    (
        "approval",
        "approval resolved → next step committed, p50/p99 over 200 requests",
    ),
    ("paused", "RSS with 1,000 requests paused on an approval"),
    (
        "postgres",
        "PostgreSQL: raw 4-statement step transactions at 1/8/32 clients beside one session's µs/step and one worker's steps/s (needs AGENT_HARNESS_TEST_DATABASE_URL) [--only raw|single|aggregate]",
    ),
    (
        "postgres-workers",
        "PostgreSQL, 1/2/4 `serve` processes: aggregate steps/s beside raw, approval across workers, SIGKILL/SIGSTOP recovery, commit → subscriber [--only aggregate|approval|recovery] (not part of `all`: minutes long)",
    ),
    (
        "breakdown",
        "latency of a step's building blocks: writer round trip, read, task hops",
    ),
    (
        "views",
        "operator CLI views on 100,000 requests / 1,000,000 events [--workspace DIR to keep/reuse]",
    ),
    (
        "models",
        "µs added per streamed model turn and to time to first delta, vs the HTTP client alone",
    ),
    (
        "mcp",
        "µs per MCP tool call over stdio: rmcp alone, the runtime's client, a durable step",
    ),
];

fn usage() -> String {
    let mut s = String::from(
        "agent-harness-bench: prints the runtime's benchmark figures\n\n\
         usage: agent-harness-bench <bench|all> [options]\n\nbenches:\n",
    );
    for (name, what) in BENCHES {
        s.push_str(&format!("  {name:<11} {what}\n"));
    }
    s.push_str(
        "  all         every bench above, each in its own process\n         \x20 http-load   the HTTP API on loopback: 200 SSE subscribers, admissions as fast as\n         \x20             accepted for 30 s, then a drain and an exactly-once check\n         \x20             [--secs N] [--subscribers N] [--queue-capacity N (5,000)]\n         \x20             [--admitters N (32): concurrent admitting connections]\n         \x20             [--worker-after: start the worker once admission ends]\n         \x20             (not part of `all`)\n\n\
         Build with --release: `cargo run --release -p harness-bench -- all`.\n\
         Workspaces go to $AGENT_HARNESS_BENCH_DIR (default: the temp dir); the CLI for\n\
         `views` is $AGENT_HARNESS_BIN or `agent-harness` next to this binary.\n",
    );
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let quiet = rest.iter().any(|a| a == "--no-header");
    let result = match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{}", usage());
            Ok(())
        }
        "all" => run_all(),
        // Not part of `all`: it runs for a set time (30 s by default).
        "http-load" => runtime().and_then(|rt| {
            let secs = flag(rest, "--secs")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(30);
            let subs = flag(rest, "--subscribers")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(200);
            let capacity = flag(rest, "--queue-capacity")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(5_000);
            if !quiet {
                print_machine();
            }
            let admitters = flag(rest, "--admitters")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(http_load::ADMITTERS);
            let worker_during = !rest.iter().any(|a| a == "--worker-after");
            rt.block_on(http_load::run(
                secs,
                subs,
                admitters,
                capacity,
                worker_during,
            ))
        }),
        // Hidden helpers for `recovery` and `paused`.
        "serve-child" => runtime()
            .and_then(|rt| rt.block_on(recovery::serve_child(&PathBuf::from(arg(rest, 0)?)))),
        "paused-child" => {
            runtime().and_then(|rt| rt.block_on(paused::child(&PathBuf::from(arg(rest, 0)?))))
        }
        name if BENCHES.iter().any(|(n, _)| *n == name) => {
            if !quiet {
                print_machine();
            }
            run_bench(name, rest)
        }
        other => {
            eprintln!("unknown bench `{other}`\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{cmd}: FAILED — {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn arg(rest: &[String], i: usize) -> Result<String> {
    match rest.get(i) {
        Some(a) => Ok(a.clone()),
        None => bail!("missing argument"),
    }
}

/// The value after `--name` in `rest`.
fn flag(rest: &[String], name: &str) -> Option<String> {
    rest.iter()
        .position(|a| a == name)
        .and_then(|i| rest.get(i + 1).cloned())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run_bench(name: &str, rest: &[String]) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        match name {
            "single" => single::run(flag(rest, "--only")).await,
            "concurrent" => concurrent::run(flag(rest, "--only")).await,
            "claims" => claims::run().await,
            "storage" => storage::run().await,
            "recovery" => {
                let latency = flag(rest, "--latency-ms")
                    .map(|v| v.parse())
                    .transpose()?
                    .unwrap_or(200);
                recovery::run(latency).await
            }
            "approval" => approval::run().await,
            "paused" => paused::run().await,
            "breakdown" => breakdown::run().await,
            "views" => views::run(flag(rest, "--workspace").map(PathBuf::from)).await,
            "models" => models::run().await,
            "mcp" => mcp::run().await,
            "postgres" => postgres::run(flag(rest, "--only")).await,
            "postgres-workers" => pg_workers::run(flag(rest, "--only")).await,
            _ => unreachable!(),
        }
    })
}

/// Every bench, each in a child process of this binary (fresh memory figures).
fn run_all() -> Result<()> {
    print_machine();
    let exe = std::env::current_exe()?;
    let mut failed = Vec::new();
    // `postgres-workers` runs for minutes and needs the release CLI: run it by name.
    for (name, _) in BENCHES.iter().filter(|(n, _)| *n != "postgres-workers") {
        println!();
        let started = std::time::Instant::now();
        let status = Command::new(&exe).arg(name).arg("--no-header").status()?;
        if !status.success() {
            failed.push(*name);
        }
        println!("({name} took {:.1} s)", started.elapsed().as_secs_f64());
    }
    println!();
    if failed.is_empty() {
        println!("all benches ran");
        Ok(())
    } else {
        bail!("these benches failed: {}", failed.join(", "))
    }
}

fn print_machine() {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| util::human_bytes(kb * 1024))
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let profile = if cfg!(debug_assertions) {
        "debug (figures are meaningless: build with --release)"
    } else {
        "release"
    };
    let base = util::bench_base();
    println!(
        "machine: {cores} cores ({cpu}), {mem} RAM, Linux {kernel}; build profile: {profile}; \
         SQLite {}; bench folder {} on {}",
        harness_store::synthetic::sqlite_version(),
        base.display(),
        filesystem_of(&base)
    );
    println!(
        "machine: load average {} now; raw 4 KiB write+fdatasync in the bench folder: {}",
        load_average(),
        fsync_cost(&base)
            .map(|d| format!("{:.0} µs (median of 50)", util::us(d)))
            .unwrap_or_else(|e| format!("not measured ({e})"))
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// What one durable commit costs at least on this disk: a 4 KiB append and fdatasync.
fn fsync_cost(base: &std::path::Path) -> Result<std::time::Duration> {
    use std::io::Write;
    std::fs::create_dir_all(base)?;
    let mut f = tempfile::tempfile_in(base)?;
    let block = [7u8; 4096];
    let mut samples = Vec::with_capacity(50);
    for _ in 0..50 {
        let t = std::time::Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    Ok(util::median(&samples))
}

/// The filesystem type of the mount holding `path` (fsync cost depends on it).
fn filesystem_of(path: &std::path::Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at)
                .then(|| (at.len(), format!("{fs} ({dev})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".into())
}
