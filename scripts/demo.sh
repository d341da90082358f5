#!/usr/bin/env bash
# The offline demo: init a workspace, run an agent that pauses for approval, show it
# in the operator views, approve it from the CLI, watch it finish, export the evidence;
# then a worker (`serve`) picking up admitted work, `requests watch` following it, and
# `runtime doctor` diagnosing a failed request.
# Needs nothing but the Rust toolchain: the model is the embedded `scripted` one.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building agent-harness (the first build on a fresh machine takes a few minutes)…"
cargo build -p harness-cli
BIN="$PWD/target/debug/agent-harness"
WS="$(mktemp -d)/demo"
SESSION=demo-session
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' R=$'\033[0m'; else B='' R=''; fi
step() { printf '\n%s$ %s%s\n' "$B" "$*" "$R"; }
SERVE_PID=
# The worker this script started, by its pid, whatever way the script ends.
stop_worker() { if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=; fi; }
trap stop_worker EXIT

step agent-harness init "$WS"
"$BIN" init "$WS"
cd "$WS"

step agent-harness run --workspace . --agent assistant --session $SESSION '"Ship the release notes"'
"$BIN" run --workspace . --agent assistant --session $SESSION "Ship the release notes"

step agent-harness runtime overview --workspace .
"$BIN" runtime overview --workspace .

step agent-harness runtime approvals watch --workspace . --status pending --once
"$BIN" runtime approvals watch --workspace . --status pending --once

APPROVAL=$("$BIN" runtime approvals list --workspace . --status pending --json | grep -o 'apr_[0-9a-z]*' | head -n1)
REQUEST=$("$BIN" runtime requests list --workspace . --session $SESSION --json | grep -o '"id": *"req_[0-9a-z]*"' | grep -o 'req_[0-9a-z]*' | tail -n1)

step agent-harness runtime doctor --workspace .
"$BIN" runtime doctor --workspace . || true

step agent-harness runtime approvals approve "$APPROVAL" --workspace . --message '"ok to send"' --as demo-operator
"$BIN" runtime approvals approve "$APPROVAL" --workspace . --message "ok to send" --as demo-operator

step agent-harness runtime requests tail --workspace . --once
"$BIN" runtime requests tail --workspace . --once

step agent-harness runtime requests show "$REQUEST" --workspace .
"$BIN" runtime requests show "$REQUEST" --workspace .

step agent-harness runtime export request --workspace . --session $SESSION --request "$REQUEST" --artifact-contents --health
OUT="$WS/exports/evidence"
"$BIN" runtime export request --workspace . --session $SESSION --request "$REQUEST" --artifact-contents --health --out "$OUT"

step agent-harness runtime verify-export "$OUT"
"$BIN" runtime verify-export "$OUT"

step agent-harness runtime health --workspace .
"$BIN" runtime health --workspace . || true

# A worker picks up what is admitted; `requests watch` follows it until it settles.
step agent-harness serve --workspace . '&'
"$BIN" serve --workspace . > "$WS/serve.log" 2>&1 &
SERVE_PID=$!
step agent-harness request --workspace . --agent researcher --session notes '"Collect the release notes"'
NEXT=$("$BIN" request --workspace . --agent researcher --session notes "Collect the release notes" --json | grep -o '"id": *"req_[0-9a-z]*"' | grep -o 'req_[0-9a-z]*')
echo "$NEXT"
step agent-harness runtime requests watch "$NEXT" --workspace .
"$BIN" runtime requests watch "$NEXT" --workspace .
stop_worker

# A failure, diagnosed: an agent whose tool call fails (the file is not there) and
# whose script then has no turn left, so the request fails.
cat >> resources/scripts/demo.yaml <<'YAML'
  broken:
    turns:
      - tool_calls: [{ tool: read_file, arguments: { path: "missing.md" } }]
YAML
printf 'name: broken\ndescription: Reads a file that is not there.\nmodel: scripted\nsystem_prompt: Read.\ntools: [read_file]\n' > config/agents/broken.yaml
step agent-harness run --workspace . --agent broken --session broken '"Read the missing notes"'
"$BIN" run --workspace . --agent broken --session broken "Read the missing notes" || true
FAILED=$("$BIN" runtime requests list --workspace . --agent broken --json | grep -o '"id": *"req_[0-9a-z]*"' | grep -o 'req_[0-9a-z]*' | head -n1)
step agent-harness runtime doctor "$FAILED" --workspace .
"$BIN" runtime doctor "$FAILED" --workspace . || true
printf '\nDemo workspace left in %s\n' "$WS"
