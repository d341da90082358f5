#!/usr/bin/env bash
# Installs schemathesis (PyPI), pinned, into a virtualenv the project owns:
# ~/.cache/agent-harness/schemathesis-VERSION (reused when present). Prints the
# path of its `schemathesis` executable. crates/cli/tests/openapi_schemathesis.rs
# is given that path in AGENT_HARNESS_SCHEMATHESIS (scripts/test.sh). Needs python3
# (3.9 or later); its venv module is installed from Debian's python3-venv when
# missing and this runs as root.
set -euo pipefail
VERSION=4.32.5
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/agent-harness/schemathesis-$VERSION"
if [ ! -x "$VENV/bin/schemathesis" ] || [ ! -f "$VENV/.installed" ]; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get install -y -qq python3-venv >&2 || { apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2; }
    else
      echo "schemathesis.sh: python3's venv module is missing (Debian: apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
  touch "$VENV/.installed"
fi
echo "$VENV/bin/schemathesis"
