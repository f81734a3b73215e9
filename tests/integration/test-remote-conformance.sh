#!/bin/bash
# integration: long
# Remote devices, scenario 4 (issue 3): libiscsi's conformance suite
# (iscsi-test-cu, family ALL, one process per suite) on a vdlvm volume that
# spans a local device (a0, on nodea) and a remote one (b0, a LUN of a stock
# tgtd on nodeb, reached over a veth pair between two network namespaces).
# The reference is tgt's own rdwr store on a plain file, exported by the same
# nodea tgtd.  Same criterion as tests/conformance/run.sh: no test fails on
# the spanning volume that does not fail on rdwr, and CompareAndWrite.Simple
# and .Miscompare pass on it.
#
# Environment: CONF_SUITE_TIMEOUT (default 300 s per suite), CONF_SUITES="S1 S2"
# (run only those suites), CONF_RESULTS=DIR
# keeps the raw outputs.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v ip
requires iscsi-test-cu -l

suite_timeout=${CONF_SUITE_TIMEOUT:-300}
results=${CONF_RESULTS:-$tmp/results}
mkdir -p "$results"

netns_setup_pair
A=$netns_a B=$netns_b
in_a() { ip netns exec "$A" "$@"; }

start_tgtd --netns "$B" --addr "$netns_b_addr" --no-module
truncate -s 200M "$tmp/nodeb-disk.img"
tgt_target_new 1 nodeb || fail "nodeb: cannot create target"
tgt_lun_new 1 1 rdwr "$tmp/nodeb-disk.img" || fail "nodeb: cannot export its disk"
url_b=$(iscsi_url 1 1)

conf=$tmp/cp.yaml
cat > "$conf" <<EOF
pool: cp
extent_size: 4MiB
devices:
  - name: a0
    path: $tmp/nodea-disk.img
    size: 64MiB
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: 10s
EOF
in_a timeout 120 "$VDLVM" pool create "$conf" || fail "pool create failed"
in_a timeout 120 "$VDLVM" -c "$conf" vol create cp/vol --size 160MiB || fail "vol create failed"
in_a timeout 120 "$VDLVM" -c "$conf" status cp/vol > "$results/status.txt" 2>&1 || true
grep -q a0 "$results/status.txt" && grep -q b0 "$results/status.txt" ||
    fail "cp/vol does not span a0 and b0: $(cat "$results/status.txt")"

start_tgtd --netns "$A" --addr "$netns_a_addr"
truncate -s 160M "$tmp/plain.img"
tgt_target_new 1 rdwr || fail "cannot create the rdwr target"
tgt_lun_new 1 1 rdwr "$tmp/plain.img" || fail "cannot export the rdwr LUN"
declare -A url=()
url[rdwr]=$(iscsi_url 1 1)
tgt_target_new 2 span || fail "cannot create the vdlvm target"
tgt_lun_new 2 1 vdlvm cp/vol "conf=$conf" || fail "cannot export cp/vol"
url[span]=$(iscsi_url 2 1)

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
for store in rdwr span; do
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
    a=$(verdict_of rdwr "$t") b=$(verdict_of span "$t")
    [ "$a" = "$b" ] && continue
    note "  $t: rdwr $a, spanning volume $b"
    [ "$b" = FAIL ] && problems+=("$t fails on the spanning volume but not on rdwr")
done < "$results/tests.txt"
for t in ALL.CompareAndWrite.Simple ALL.CompareAndWrite.Miscompare; do
    grep -qx "$t" "$results/tests.txt" || continue
    [ "$(verdict_of span "$t")" = PASS ] || problems+=("$t: $(verdict_of span "$t") on the spanning volume")
done
for s in rdwr span; do
    note "$s: $(cu_count "$results/$s.res" PASS) pass, $(cu_count "$results/$s.res" SKIP) skip, $(cu_count "$results/$s.res" FAIL) fail"
done
if [ ${#problems[@]} -gt 0 ]; then
    printf '%s\n' "${problems[@]}" >&2
    fail "conformance on a volume spanning a local and a remote device"
fi
