#!/usr/bin/env bash
# Runs every test (unit tests beside the modules, network tests in tests/),
# after installing what they need. Ends with a plain "N passed, N failed" line.
# Arguments are passed to `deno test` (e.g. a file or --filter NAME).
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$here"
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

export DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# A hung test must not eat CI's 90 minutes: stop the whole run after 40.
timeout --kill-after=30 2400 node_modules/.bin/deno test -A "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -1)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
if [ -z "$summary" ]; then
  passed=0
  failed=1
fi
if [ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; then failed=1; fi
echo "${passed:-0} passed, ${failed:-0} failed"
[ "$status" -eq 0 ] && [ "${failed:-0}" -eq 0 ]
