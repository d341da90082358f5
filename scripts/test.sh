#!/usr/bin/env bash
# The test command (README.md; `.ci/run` calls it after the format and lint gates).
# It sets up what the tests need on this machine kind, so that nothing CI must run
# is skipped: the machine's PostgreSQL (started if it is down) for the store
# contract suite, the npm MCP server the MCP tests run, schemathesis (PyPI) for the
# OpenAPI check, chromium for the console's browser test, and root-only tests (a tmpfs
# for a really full disk) when root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
export AGENT_HARNESS_TEST_DATABASE_URL="${AGENT_HARNESS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export AGENT_HARNESS_REQUIRE_POSTGRES=1
if [ "$(id -u)" = 0 ]; then
  export AGENT_HARNESS_REQUIRE_ROOT_TESTS=1
fi

# The real MCP server from npm (crates/cli/tests/mcp_tools.rs requires it here).
scripts/mcp-servers.sh
export AGENT_HARNESS_REQUIRE_NPM_MCP=1

# schemathesis from PyPI, pinned, in a virtualenv under ~/.cache/agent-harness
# (crates/cli/tests/openapi_schemathesis.rs requires it here).
AGENT_HARNESS_SCHEMATHESIS="$(scripts/schemathesis.sh)"
export AGENT_HARNESS_SCHEMATHESIS AGENT_HARNESS_REQUIRE_SCHEMATHESIS=1

# Debian's chromium and playwright-core for the console's browser test
# (crates/cli/tests/console.rs requires them here; screenshots in target/test-artifacts/console/).
scripts/browser.sh
export AGENT_HARNESS_REQUIRE_BROWSER=1

cargo test --workspace --locked "$@"
