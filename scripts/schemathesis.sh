#!/usr/bin/env bash
# Installs schemathesis (PyPI), pinned, into a virtualenv the project owns:
# ~/.cache/agent-harness/schemathesis-VERSION (reused when present). Prints the
# path of its `schemathesis` executable. crates/cli/tests/openapi_schemathesis.rs
# finds it there (or at AGENT_HARNESS_SCHEMATHESIS). Needs python3 with venv.
set -euo pipefail
VERSION=4.32.5
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/agent-harness/schemathesis-$VERSION"
if [ ! -x "$VENV/bin/schemathesis" ] || [ ! -f "$VENV/.installed" ]; then
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
  touch "$VENV/.installed"
fi
echo "$VENV/bin/schemathesis"
