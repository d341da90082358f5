#!/bin/sh
# Demo command tool: "sends" a mail by appending a line to outbox.log in the
# folder it runs in (the runtime starts command tools in the session's work/<session-id>/).
# $1 = to, $2 = subject. The runtime sets AGENT_HARNESS_CALL_ID.
set -eu
printf '%s call=%s to=%s subject=%s\n' \
  "$(date -u +%FT%TZ)" "${AGENT_HARNESS_CALL_ID:-}" "$1" "$2" >> outbox.log
printf 'queued mail to %s\n' "$1"
