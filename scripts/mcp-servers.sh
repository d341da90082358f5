#!/usr/bin/env bash
# Installs the real MCP servers the tests run (tests/mcp-npm: the reference
# `@modelcontextprotocol/server-everything` from the npm registry), exactly as
# its committed package-lock.json pins them (again only when the lock changed).
# Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/../tests/mcp-npm"
if ! cmp -s package-lock.json node_modules/.installed-lock.json 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock.json
fi
