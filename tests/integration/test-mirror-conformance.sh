#!/bin/bash
# integration: long
# Mirrored volumes, test 5 (issue 4): libiscsi's conformance suite
# (iscsi-test-cu, family ALL, one process per suite) on a 2-leg mirror with
# one leg on nodeb and one on nodec (stock tgtds exporting files, reached
# over veth pairs), served by nodea's tgtd with the vdlvm module.  The
# reference is tgt's own rdwr store on a plain file, exported by the same
# nodea tgtd.  Same criterion as tests/conformance/run.sh: no test fails on
# the mirror that does not fail on rdwr, the mirror passes at least
# CONF_MIN_PASS tests (default 223; CUnit counts a test that skips itself as
# passed), and CompareAndWrite.Simple and .Miscompare pass on it (COMPARE
# AND WRITE compares and writes under the volume's write lock, on both legs).
# Afterwards the two legs are equal (`vdlvm verify`).
#
# Environment: CONF_SUITE_TIMEOUT (default 300 s per suite), CONF_MIN_PASS,
# CONF_SUITES="SUITE..." runs only those suites,
# CONF_RESULTS=DIR keeps the raw outputs.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
mirror_requires
requires iscsi-test-cu -l

suite_timeout=${CONF_SUITE_TIMEOUT:-300}
min_pass=${CONF_MIN_PASS:-223}
results=${CONF_RESULTS:-$tmp/results}
mkdir -p "$results"

mirror_nodes_setup
mirror_peers_start 200M
mirror_pool_create cm 10s
mirror_vol_create cm/vol 160MiB
A=$NS_A

start_tgtd --netns "$A" --addr "$ADDR_A_B"
truncate -s 160M "$tmp/plain.img"
tgt_target_new 1 rdwr || fail "cannot create the rdwr target"
tgt_lun_new 1 1 rdwr "$tmp/plain.img" || fail "cannot export the rdwr LUN"
declare -A url=()
url[rdwr]=$(iscsi_url 1 1)
tgt_target_new 2 mirror || fail "cannot create the vdlvm target"
tgt_lun_new 2 1 vdlvm cm/vol "conf=$conf" || fail "cannot export cm/vol"
url[mirror]=$(iscsi_url 2 1)
iscsi-test-cu -l > "$results/list.txt" 2>&1 || true
grep -E '^ALL\.[^.]+\.[^.]+$' "$results/list.txt" > "$results/tests.txt" || true
mapfile -t suites < <(grep -E '^ALL\.[^.]+$' "$results/list.txt" | sed 's/^ALL\.//')
if [ -n "${CONF_SUITES:-}" ]; then
    read -ra suites <<<"$CONF_SUITES"
    grep -E "^ALL\.(${CONF_SUITES// /|})\." "$results/tests.txt" > "$results/tests.sel" || true
    mv "$results/tests.sel" "$results/tests.txt"
fi
[ -s "$results/tests.txt" ] || fail "iscsi-test-cu -l lists no tests"

# verdicts STORE SUITE OUT RC: the suite's verdicts (cu_verdicts) into
# STORE.SUITE.res and STORE.res.
verdicts() {
    cu_verdicts "$2" "$3" "$4" "$results/tests.txt" > "$results/$1.$2.res"
    cat "$results/$1.$2.res" >> "$results/$1.res"
}

t0=$(date +%s)
for store in rdwr mirror; do
    : > "$results/$store.res"
    for suite in "${suites[@]}"; do
        rc=0
        (cd "$tmp" && in_a timeout -k 10 "$suite_timeout" stdbuf -oL -eL \
            iscsi-test-cu -d "${url[$store]}" -t "ALL.$suite") </dev/null \
            > "$results/$store.$suite.txt" 2>&1 || rc=$?
        verdicts "$store" "$suite" "$results/$store.$suite.txt" "$rc"
    done
    kill -0 "$tgtd_pid" 2>/dev/null || fail "nodea's tgtd died during the $store run"
done
note "conformance ran ${#suites[@]} suites on two stores in $(( $(date +%s) - t0 ))s"

verdict_of() { cu_verdict_of "$results/$1.res" "$2"; }
problems=()
while read -r t; do
    a=$(verdict_of rdwr "$t") b=$(verdict_of mirror "$t")
    [ "$a" = "$b" ] && continue
    note "  $t: rdwr $a, mirror $b"
    [ "$b" = FAIL ] && problems+=("$t fails on the mirror but not on rdwr")
done < "$results/tests.txt"
for t in ALL.CompareAndWrite.Simple ALL.CompareAndWrite.Miscompare; do
    grep -qx "$t" "$results/tests.txt" || continue
    [ "$(verdict_of mirror "$t")" = PASS ] || problems+=("$t: $(verdict_of mirror "$t") on the mirror")
done
for s in rdwr mirror; do
    note "$s: $(cu_count "$results/$s.res" PASS) pass, $(cu_count "$results/$s.res" SKIP) skip, $(cu_count "$results/$s.res" FAIL) fail"
done
ntests=$(wc -l < "$results/tests.txt")
mp=$(cu_count "$results/mirror.res" PASS SKIP)
if [ "$ntests" -ge 230 ] && [ "$mp" -lt "$min_pass" ]; then
    problems+=("the mirror passes $mp tests, fewer than $min_pass")
fi
rc=0
out=$(vdlvm_a verify cm/vol 2>&1) || rc=$?
note "vdlvm verify after the suites: exit $rc: $out"
[ "$rc" = 0 ] || problems+=("the legs differ after the suites: $out")
note "RESULT mirror: $mp of $ntests passed (CUnit count), $(cu_count "$results/mirror.res" FAIL) failed; rdwr $(cu_count "$results/rdwr.res" PASS SKIP) passed"
if [ ${#problems[@]} -gt 0 ]; then
    printf '%s\n' "${problems[@]}" >&2
    fail "conformance on a mirrored volume"
fi
