#!/usr/bin/env bash
# The offline demo: init a workspace, run an agent that pauses for approval, show it
# in the operator views, approve it from the CLI, watch it finish, export the evidence.
# Needs nothing but the Rust toolchain: the model is the embedded `scripted` one.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p harness-cli
BIN="$PWD/target/debug/agent-harness"
WS="$(mktemp -d)/demo"
SESSION=demo-session
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' R=$'\033[0m'; else B='' R=''; fi
step() { printf '\n%s$ %s%s\n' "$B" "$*" "$R"; }

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

step agent-harness runtime approvals approve "$APPROVAL" --workspace . --session $SESSION --request "$REQUEST" --message '"ok to send"' --as demo-operator
"$BIN" runtime approvals approve "$APPROVAL" --workspace . --session $SESSION --request "$REQUEST" --message "ok to send" --as demo-operator

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
printf '\nDemo workspace left in %s\n' "$WS"
