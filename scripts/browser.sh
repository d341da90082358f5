#!/usr/bin/env bash
# Installs what the console's browser test drives (crates/cli/tests/console.rs):
# Debian's `chromium` (apt-get, when /usr/bin/chromium is absent; needs root, as CI
# runs) and `playwright-core` from npm as scripts/browser/package-lock.json pins it
# (again only when the lock changed). Playwright never downloads a browser here:
# the test launches /usr/bin/chromium itself.
set -euo pipefail
cd "$(dirname "$0")/browser"
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/browser.sh: /usr/bin/chromium is missing; install Debian's chromium (apt-get install chromium) as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
if ! cmp -s package-lock.json node_modules/.installed-lock.json 2>/dev/null; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock.json
fi
