#!/bin/bash
# .ci/run fails when a stage ran nothing: every integration test skipped,
# every conformance test skipped, or a summary missing (checked on logs
# with `.ci/run --check-log`, without running make check).
source "$(dirname "$0")/../functions.sh"
ci=$top_srcdir/.ci/run
grep -q -- '--check-log' "$ci" || fail "$ci has no --check-log (does not check the summaries)"

check() { # EXPECT(0|1) LINES...
    local want=$1 rc=0
    shift
    printf '%s\n' "$@" > "$tmp/log"
    "$ci" --check-log "$tmp/log" > "$tmp/out" 2>&1 || rc=$?
    if [ "$want" = 0 ]; then
        [ "$rc" = 0 ] || fail "rejected a good log ($*): $(cat "$tmp/out")"
    else
        [ "$rc" != 0 ] || fail "accepted a bad log: $*"
        grep -q 'vdlvm CI: FAIL' "$tmp/out" || fail "no message for a bad log: $(cat "$tmp/out")"
    fi
}
check 0 "=== test-a" "21 passed, 0 failed, 3 skipped" "conformance OK" "conformance: 230 passed, 0 failed, 12 skipped"
check 1 "0 passed, 0 failed, 42 skipped" "conformance: 230 passed, 0 failed, 12 skipped"
check 1 "21 passed, 0 failed, 3 skipped" "conformance: 0 passed, 0 failed, 242 skipped"
check 1 "21 passed, 0 failed, 3 skipped"
check 1 "conformance: 230 passed, 0 failed, 12 skipped"
check 1 ""
note "ok"
