#!/bin/bash
# Usage: BUILD=build [BENCH_PERF=DIR] tests/bench/async-remote.sh [RUNS] [SECS]
#
# Issue 14's asynchronous path on a remote device, in one run.  nodeb (a
# network namespace) runs a stock tgtd exporting three rdwr LUNs on files
# of the same size; nodea (another namespace, a veth pair between them)
# runs the initiator (build/vdload) and two tgtds with the module:
#   peer         nodeb's first LUN, read directly by vdload from nodea
#   vdlvm        a vdlvm linear volume on a pool of one remote device
#                (nodeb's second LUN): the asynchronous path (default)
#   vdlvm-sync   the same on nodeb's third LUN, a second tgtd with
#                VDLVM_ASYNC=0 (the module's worker threads)
# Every LUN is written in full first.  Workloads at queue depth 32: 4 KiB
# random read, 4 KiB random write, 1 MiB sequential read, 1 MiB sequential
# write.  RUNS (default 3) repetitions of SECS (default 4) seconds,
# interleaved (repetition, workload, store); medians.  CPU: utime+stime of
# nodeb's tgtd plus (vdlvm rows) nodea's tgtd around each run, in ticks
# per 100,000 I/Os.  Prints the load average before and after.  Needs
# root (network namespaces).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/../integration/mirror-common.sh"
test_name=bench-async-remote
mirror_requires
requires command -v python3

RUNS=${1:-3}
SECS=${2:-4}
LUN_MIB=${BENCH_LUN_MIB:-256}
lun=$((LUN_MIB * MiB))

mirror_nodes_setup
start_tgtd --netns "$NS_B" --addr "$ADDR_B" --no-module
b_pid=$tgtd_pid
declare -A url pid peer
for i in 1 2 3; do
    truncate -s "$((LUN_MIB + 16))M" "$tmp/nodeb-$i.img"
    tgt_target_new "$i" "nodeb-$i" || fail "nodeb: cannot create target $i"
    tgt_lun_new "$i" 1 rdwr "$tmp/nodeb-$i.img" || fail "nodeb: cannot export disk $i"
    peer[$i]=$(iscsi_url "$i" 1)
done
url[peer]=${peer[1]} pid[peer]=

# pool NAME PEER_URL: a pool of one remote device, volume NAME/vol
pool() {
    cat > "$tmp/$1.yaml" <<EOF
pool: $1
extent_size: 4MiB
devices:
  - name: b0
    iscsi: $2
    node: nodeb
    timeout: 30s
EOF
    vdlvm_a pool create "$tmp/$1.yaml" >/dev/null || fail "pool create $1 failed"
    vdlvm_a -c "$tmp/$1.yaml" vol create "$1/vol" --size "${LUN_MIB}MiB" >/dev/null ||
        fail "vol create $1/vol failed"
}
pool ra "${peer[2]}"
pool rs "${peer[3]}"
start_tgtd --netns "$NS_A" --addr "$ADDR_A_B"
tgt_target_new 1 vdlvm || fail "nodea: cannot create target"
tgt_lun_new 1 1 vdlvm ra/vol "conf=$tmp/ra.yaml" || fail "nodea: cannot export ra/vol"
url[vdlvm]=$(iscsi_url 1 1) pid[vdlvm]=$tgtd_pid
VDLVM_ASYNC=0 start_tgtd --netns "$NS_A" --addr "$ADDR_A_B"
tgt_target_new 1 vdlvm-sync || fail "nodea: cannot create target"
tgt_lun_new 1 1 vdlvm rs/vol "conf=$tmp/rs.yaml" || fail "nodea: cannot export rs/vol"
url[vdlvm-sync]=$(iscsi_url 1 1) pid[vdlvm-sync]=$tgtd_pid
stores="peer vdlvm vdlvm-sync"
for s in $stores; do
    vdload_a write --pattern seq --bs 1M --qd 8 --count "$LUN_MIB" \
        --range "0:$lun" --quiet "${url[$s]}" >/dev/null || fail "prefill $s"
done
grep -q "asynchronous I/O: commands start on the main thread" "$tmp"/tgtd-*.log ||
    fail "nodea's tgtd did not use the asynchronous path"
note "LUNs filled; load average $(cut -d' ' -f1-3 /proc/loadavg)"

ticks() {
    local f t=0 p
    for p in "$@"; do
        read -r -a f <"/proc/$p/stat" || fail "tgtd $p is gone"
        t=$((t + f[13] + f[14]))
    done
    echo $t
}
workloads="randread-4k randwrite-4k seqread-1m seqwrite-1m"
declare -A args=(
    [randread-4k]="read --pattern rand --bs 4k"
    [randwrite-4k]="write --pattern rand --bs 4k"
    [seqread-1m]="read --pattern seq --bs 1M"
    [seqwrite-1m]="write --pattern seq --bs 1M"
)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
raw=$tmp/raw.tsv
: > "$raw"
for ((r = 1; r <= RUNS; r++)); do
    for w in $workloads; do
        for s in $stores; do
            # shellcheck disable=SC2086
            c0=$(ticks $b_pid ${pid[$s]})
            perf_pid=
            if [ -n "${BENCH_PERF:-}" ] && [ "$r" = 1 ] && [ "$s" != peer ]; then
                # BENCH_PERF=DIR: perf record -g of nodea's tgtd (first
                # repetition), its report in DIR/STORE-WORKLOAD.txt
                perf record -g -o "$tmp/perf-$s-$w.data" -p "${pid[$s]}" -- sleep "$SECS" \
                    >/dev/null 2>&1 &
                perf_pid=$!
            fi
            # shellcheck disable=SC2086
            out=$(in_a timeout $((SECS + 60)) "$VDLOAD" ${args[$w]} --qd 32 --time "$SECS" \
                --range "0:$lun" --json --quiet "${url[$s]}") || fail "$s $w run $r: $out"
            if [ -n "$perf_pid" ]; then
                wait "$perf_pid" || true
                mkdir -p "$BENCH_PERF"
                perf report -i "$tmp/perf-$s-$w.data" --no-children -g none --sort dso,symbol \
                    --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 > "$BENCH_PERF/$s-$w.txt" || true
            fi
            # shellcheck disable=SC2086
            c1=$(ticks $b_pid ${pid[$s]})
            python3 -c '
import json, sys
t = json.loads(sys.argv[1])
if t["errors"]:
    sys.exit("%d I/O errors" % t["errors"])
t = t["total"]
print(sys.argv[2], "%.0f" % t["iops"], "%.2f" % (int(sys.argv[3]) / t["ios"] * 1e5 if t["ios"] else 0))
' "$out" "$s $w $r" $((c1 - c0)) >> "$raw" || fail "$s $w run $r failed"
        done
    done
    note "repetition $r done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$raw" "$RUNS" "$SECS" "$load_before" "$load_after" "$(getconf CLK_TCK)" <<'PY'
import sys, statistics, collections
raw, runs, secs, lb, la, hz = sys.argv[1:]
io, cpu = collections.defaultdict(list), collections.defaultdict(list)
for line in open(raw):
    s, w, r, iops, c = line.split()
    io[(s, w)].append(float(iops))
    cpu[(s, w)].append(float(c))
m = {k: statistics.median(v) for k, v in io.items()}
c = {k: statistics.median(v) for k, v in cpu.items()}
print(f"# Asynchronous path on a remote device (issue 14): medians of {runs} runs of {secs} s, qd 32")
print(f"load average before {lb}, after {la}; CPU: tgtd ticks ({hz}/s) per 100k I/Os, both nodes")
print()
print("| workload | peer | vdlvm-sync | vdlvm (async) | sync/peer | async/peer | async/sync | cpu peer | cpu sync | cpu async |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for w in dict.fromkeys(k[1] for k in m):
    p, s, a = m[("peer", w)], m[("vdlvm-sync", w)], m[("vdlvm", w)]
    q = lambda x, y: f"{x / y:.2f}" if y else "-"
    print(f"| {w} | {p:.0f} | {s:.0f} | {a:.0f} | {q(s, p)} | {q(a, p)} | {q(a, s)} | "
          f"{c[('peer', w)]:.1f} | {c[('vdlvm-sync', w)]:.1f} | {c[('vdlvm', w)]:.1f} |")
print()
print("IOPS (1 MiB rows: IOPS x 1 MiB = bytes/s).  Raw runs:")
for k in sorted(io):
    print("   ", *k, " ".join(f"{x:.0f}" for x in io[k]))
PY
