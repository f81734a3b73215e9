#!/bin/bash
# Usage: BUILD=build tests/bench/async-direct.sh [RUNS] [SECS]
#
# Issue 14's `direct:` per device, side by side with tgt's own stores on
# the same backing, in one run, one tgtd (BUILD's module).  For each
# backing:
#   ext4   files in BENCH_EXT4_DIR (default /var/tmp; must be ext4)
#   loop   loop block devices (losetup) on files there
# the stores are
#   rdwr          tgt rdwr on data (file or loop device; buffered)
#   aio           tgt aio on the same data (O_DIRECT, kernel AIO)
#   vdlvm-buf     vdlvm linear volume on a pool of one device, direct: false
#                 (buffered: the inline page-cache path and the workers)
#   vdlvm-direct  the same with direct: true (O_DIRECT, io_uring from
#                 tgtd's main thread)
# Workloads at queue depth 32 (build/vdload, one initiator, libiscsi):
# 4 KiB random read, 4 KiB random write, 1 MiB sequential read, 1 MiB
# sequential write; every LUN written in full first.  RUNS (default 3)
# repetitions of SECS (default 3) seconds, interleaved (repetition,
# workload, backing, store; the order of the stores is reversed every
# other repetition).  The table shows medians, ratios, and tgtd's CPU
# (user + system ticks) per 100,000 I/Os of each store (one load runs at
# a time, so tgtd's ticks during a run are that store's).
# BENCH_STORES and BENCH_BACKINGS pick subsets.  Prints the load average
# before and after.  Needs root (loop devices).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
test_name=bench-async-direct
requires_root
requires_tgtd
requires_vdlvm
requires_file "$BUILD/vdload"
requires command -v python3

RUNS=${1:-3}
SECS=${2:-3}
LUN_MIB=${BENCH_LUN_MIB:-256}
EXT4=${BENCH_EXT4_DIR:-/var/tmp}
BACKINGS=${BENCH_BACKINGS:-"ext4 loop"}
STORES=${BENCH_STORES:-"rdwr aio vdlvm-buf vdlvm-direct"}
VDLOAD=$BUILD/vdload
MiB=$((1024 * 1024))
lun=$((LUN_MIB * MiB))
[ "$(df --output=fstype "$EXT4" | tail -n 1)" = ext4 ] || fail "$EXT4 is not on ext4"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
raw=$tmp/raw.tsv
: > "$raw"
loops=()
detach_loops() { local l; for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done; }
cleanup_fn detach_loops
edir=$(mktemp -d "$EXT4/vdlvm-bdirect.XXXXXX")
cleanup_fn rm -rf "$edir"

# dev BACKING NAME: a backing path for NAME (a file, or a loop device on one)
dev() {
    local b=$1 f=$edir/$2.img
    fallocate -l "$(( lun + 16 * MiB ))" "$f" 2>/dev/null || truncate -s "$(( lun + 16 * MiB ))" "$f"
    if [ "$b" = loop ]; then
        local l
        l=$(losetup -f --show "$f") || fail "losetup $f failed"
        loops+=("$l")
        echo "$l"
    else
        echo "$f"
    fi
}

# pool BACKING NAME DIRECT: conf of pool NAME on one device, volume NAME/vol
pool() {
    local b=$1 name=$2 d conf=$tmp/$2.yaml
    d=$(dev "$b" "$name-d0")
    printf 'pool: %s\nextent_size: 4M\ndevices:\n  - name: d0\n    path: %s\n    direct: %s\n' \
        "$name" "$d" "$3" > "$conf"
    [ "$b" = loop ] || printf '    size: %sM\n' $(( LUN_MIB + 16 )) >> "$conf"
    vdlvm pool create "$conf" >/dev/null || fail "pool $name on $d"
    vdlvm -c "$conf" vol create "$name/vol" --size "${LUN_MIB}M" >/dev/null || fail "vol $name/vol"
    echo "$conf"
}

declare -A url=()
start_tgtd
tid=1
for b in $BACKINGS; do
    data=$(dev "$b" "data-$b")
    tgt_target_new $tid "$b-rdwr"; tgt_lun_new $tid 1 rdwr "$data"; url[$b.rdwr]=$(iscsi_url $tid 1); tid=$((tid + 1))
    tgt_target_new $tid "$b-aio"; tgt_lun_new $tid 1 aio "$data"; url[$b.aio]=$(iscsi_url $tid 1); tid=$((tid + 1))
    conf=$(pool "$b" "pb$b" false)
    tgt_target_new $tid "$b-buf"; tgt_lun_new $tid 1 vdlvm "pb$b/vol" "conf=$conf"; url[$b.vdlvm-buf]=$(iscsi_url $tid 1); tid=$((tid + 1))
    conf=$(pool "$b" "pd$b" true)
    tgt_target_new $tid "$b-direct"; tgt_lun_new $tid 1 vdlvm "pd$b/vol" "conf=$conf"; url[$b.vdlvm-direct]=$(iscsi_url $tid 1); tid=$((tid + 1))
    for s in rdwr vdlvm-buf vdlvm-direct; do
        timeout 300 "$VDLOAD" write --pattern seq --bs 1M --qd 8 --count "$LUN_MIB" \
            --range "0:$lun" --quiet "${url[$b.$s]}" >/dev/null || fail "prefill $b $s"
    done
done
note "stores ready; load average $(cut -d' ' -f1-3 /proc/loadavg)"
ticks() { awk '{ print $14 + $15 }' /proc/"$tgtd_pid"/stat; }

workloads="randread-4k randwrite-4k seqread-1m seqwrite-1m"
declare -A args=(
    [randread-4k]="read --pattern rand --bs 4k"
    [randwrite-4k]="write --pattern rand --bs 4k"
    [seqread-1m]="read --pattern seq --bs 1M"
    [seqwrite-1m]="write --pattern seq --bs 1M"
)
for (( r = 1; r <= RUNS; r++ )); do
    for w in $workloads; do
        order=$STORES
        (( r % 2 )) || order=$(tr ' ' '\n' <<<"$STORES" | tac | tr '\n' ' ')
        for b in $BACKINGS; do
            for s in $order; do
                t0=$(ticks)
                # shellcheck disable=SC2086
                out=$(timeout $(( SECS + 60 )) "$VDLOAD" ${args[$w]} --qd 32 --time "$SECS" \
                    --range "0:$lun" --json --quiet "${url[$b.$s]}") || fail "$b $s $w run $r: $out"
                t1=$(ticks)
                res=$(python3 -c 'import json,sys; t=json.loads(sys.argv[1])["total"]; print("%.0f %.1f %d" % (t["iops"], t["mbps"], t.get("ios", t["iops"] * float(sys.argv[2]))))' "$out" "$SECS")
                echo "$b $s $w $r $res $((t1 - t0))" >> "$raw"
            done
        done
    done
    note "repetition $r done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$raw" "$RUNS" "$SECS" "$load_before" "$load_after" <<'PY'
import sys, statistics, collections
raw, runs, secs, lb, la = sys.argv[1:]
d = collections.defaultdict(list)
cpu = collections.defaultdict(list)
for line in open(raw):
    b, s, w, r, iops, mbps, ios, ticks = line.split()
    d[(b, s, w)].append(float(iops))
    if float(ios) > 0:
        cpu[(b, s, w)].append(float(ticks) * 1e5 / float(ios))
med = {k: statistics.median(v) for k, v in d.items()}
mcpu = {k: statistics.median(v) for k, v in cpu.items()}
print(f"# direct: per device (issue 14): medians of {runs} runs of {secs} s, qd 32")
print(f"load average before {lb}, after {la}")
print()
print("| backing | workload | rdwr | aio | vdlvm-buf | vdlvm-direct | buf/rdwr | direct/rdwr | direct/aio | direct/buf | CPU rdwr | CPU aio | CPU buf | CPU direct |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for b in dict.fromkeys(k[0] for k in med):
    for w in dict.fromkeys(k[2] for k in med):
        g = lambda s: med.get((b, s, w), 0)
        c = lambda s: f"{mcpu[(b, s, w)]:.0f}" if (b, s, w) in mcpu else "-"
        rd, ai, bf, di = g("rdwr"), g("aio"), g("vdlvm-buf"), g("vdlvm-direct")
        q = lambda a, z: f"{a / z:.2f}" if z else "-"
        print(f"| {b} | {w} | {rd:.0f} | {ai:.0f} | {bf:.0f} | {di:.0f} | {q(bf, rd)} | {q(di, rd)} | {q(di, ai)} | {q(di, bf)} | {c('rdwr')} | {c('aio')} | {c('vdlvm-buf')} | {c('vdlvm-direct')} |")
print()
print("IOPS (1 MiB rows: IOPS x 1 MiB = bytes/s); CPU: tgtd ticks (1/100 s) per 100,000 I/Os.  Raw runs (IOPS):")
for k in sorted(d):
    print("   ", *k, " ".join(f"{x:.0f}" for x in d[k]))
PY
