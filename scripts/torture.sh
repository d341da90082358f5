#!/usr/bin/env bash
# Crash torture, run by hand: SIGKILL `agent-harness serve` at hundreds of points of a
# mixed workload with approvals, then check nothing was lost or done twice.
# Usage: scripts/torture.sh [CRASH_POINTS]   (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_POINTS="${1:-300}" cargo test --release -p harness-cli --test crash_recovery \
  sigkill_at_many_points -- --nocapture
