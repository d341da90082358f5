#!/bin/sh
# Demo command tool: prints the number of words in $1.
set -eu
printf '%s\n' "$1" | wc -w | tr -d ' '
