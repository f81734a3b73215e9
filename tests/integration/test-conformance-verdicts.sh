#!/bin/bash
# The one parser of iscsi-test-cu output (cu_verdicts in tests/functions.sh,
# used by tests/conformance/run.sh and the integration conformance tests):
# pass, skip, fail, a verdict on the next line or after a teardown message,
# and tests left without a verdict by a crash or a timeout.
source "$(dirname "$0")/../functions.sh"

declare -F cu_verdicts >/dev/null || fail "tests/functions.sh has no cu_verdicts"

cat > "$tmp/tests.txt" <<'LIST'
ALL.Read10.Simple
ALL.Read10.BeyondEol
ALL.Read10.Residuals
ALL.Read10.Flags
ALL.Read10.Invalid
ALL.Read10.Crashed
ALL.Write10.Simple
LIST
# CUnit's basic output, as iscsi-test-cu prints it (CRLF on one line).
printf '%s\n' \
    'Suite: Read10' \
    '  Test: Simple ...passed' \
    '  Test: BeyondEol ...' \
    '[SKIPPED] target does not support READ10 beyond EOL' \
    'passed' \
    '  Test: Residuals ...FAILED' \
    '    1. test_read10_residuals.c:120  - CU_ASSERT_EQUAL(...)' \
    $'  Test: Flags ...passed   \r' \
    '  Test: Invalid ...' \
    'FAILED teardown: logout failed' \
    '  Test: Crashed ...' > "$tmp/out.txt"

cu_verdicts Read10 "$tmp/out.txt" 139 "$tmp/tests.txt" > "$tmp/res" ||
    fail "cu_verdicts failed"
expect() {
    local t=$1 v=$2 got
    got=$(cu_verdict_of "$tmp/res" "ALL.Read10.$t")
    [ "$got" = "$v" ] || fail "ALL.Read10.$t: verdict '$got', expected $v; all: $(cat "$tmp/res")"
}
expect Simple PASS
expect BeyondEol SKIP
expect Residuals FAIL
expect Flags PASS
expect Invalid FAIL
expect Crashed FAIL
grep -q '^ALL.Read10.Crashed FAIL (no result, exit 139)$' "$tmp/res" ||
    fail "a test without a verdict is not marked with the exit status: $(cat "$tmp/res")"
grep -q Write10 "$tmp/res" && fail "a test of another suite got a verdict"
[ "$(wc -l < "$tmp/res")" = 6 ] || fail "expected 6 verdicts: $(cat "$tmp/res")"
[ "$(cu_count "$tmp/res" PASS)" = 2 ] || fail "cu_count PASS: $(cu_count "$tmp/res" PASS)"
[ "$(cu_count "$tmp/res" PASS SKIP)" = 3 ] || fail "cu_count PASS SKIP"
[ "$(cu_count "$tmp/res" FAIL)" = 3 ] || fail "cu_count FAIL"

# A suite that timed out before any verdict.
: > "$tmp/empty.txt"
cu_verdicts Write10 "$tmp/empty.txt" 124 "$tmp/tests.txt" > "$tmp/res2"
[ "$(cat "$tmp/res2")" = "ALL.Write10.Simple FAIL (timeout)" ] ||
    fail "timed-out suite: $(cat "$tmp/res2")"

# Every conformance script uses this parser, none a copy of its own.
for f in "$top_srcdir"/tests/conformance/run.sh "$top_srcdir"/tests/integration/test-*conformance*.sh; do
    grep -q 'cu_verdicts' "$f" || fail "$f does not use cu_verdicts"
    grep -q 'Test: \[^ \]+' "$f" && fail "$f parses iscsi-test-cu output itself"
done
note "ok"
