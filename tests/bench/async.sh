#!/bin/bash
# Usage: BUILD=build tests/bench/async.sh [RUNS] [SECS]
#
# Issue 14's asynchronous path, side by side with tgt's own stores on the
# same backing, in one run.  For each backing:
#   tmpfs  files in /dev/shm
#   ext4   files in BENCH_EXT4_DIR (default /var/tmp; must be ext4)
#   loop   loop block devices (losetup) on files in BENCH_EXT4_DIR
# one tgtd (BUILD's module) exports
#   rdwr        tgt rdwr on data (file or loop device)
#   aio         tgt aio on the same data
#   vdlvm       vdlvm linear volume on a pool of one device (file or loop
#               device): the asynchronous path on (this build)
# and a second tgtd, same binary, exports
#   vdlvm-before  the same on its own device with MODDIR's module (default
#               /work/main/build/backing-store: main before the change) or,
#               when MODDIR is "off", this build with VDLVM_ASYNC=0
# Workloads at queue depth 32 (build/vdload, one initiator, libiscsi):
# 4 KiB random read, 4 KiB random write, 1 MiB sequential read, 1 MiB
# sequential write; every LUN written in full first.  RUNS (default 3)
# repetitions of SECS (default 3) seconds, interleaved (repetition,
# workload, store; the order of the stores is reversed every other
# repetition, so that none always runs right after another's writes); the
# table shows medians and ratios to rdwr and aio.  BENCH_STORES (default
# "rdwr aio vdlvm vdlvm-before") measures a subset, e.g. "vdlvm
# vdlvm-before" for the A/B alone.
# Prints the load average before and after.  Needs root (loop devices).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
test_name=bench-async
requires_tgtd
requires_vdlvm
requires_file "$BUILD/vdload"
requires command -v python3

RUNS=${1:-3}
SECS=${2:-3}
LUN_MIB=${BENCH_LUN_MIB:-256}
EXT4=${BENCH_EXT4_DIR:-/var/tmp}
MODDIR=${MODDIR:-/work/main/build/backing-store}
BACKINGS=${BENCH_BACKINGS:-"tmpfs ext4 loop"}
STORES=${BENCH_STORES:-"rdwr aio vdlvm vdlvm-before"}
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

# dev BACKING NAME: a backing path for NAME (a file, or a loop device on one)
dev() {
    local b=$1 name=$2 f
    case $b in
        tmpfs) f=$bdir/$name.img ;;
        *) f=$edir/$name.img ;;
    esac
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

# pool BACKING NAME: conf of pool NAME on one device, volume NAME/vol
pool() {
    local b=$1 name=$2 d conf=$tmp/$2.yaml
    d=$(dev "$b" "$name-d0")
    printf 'pool: %s\nextent_size: 4M\ndevices:\n  - name: d0\n    path: %s\n    size: %sM\n' \
        "$name" "$d" $(( LUN_MIB + 16 )) > "$conf"
    vdlvm pool create "$conf" >/dev/null || fail "pool $name on $d"
    vdlvm -c "$conf" vol create "$name/vol" --size "${LUN_MIB}M" >/dev/null || fail "vol $name/vol"
    echo "$conf"
}

declare -A url=()
for b in $BACKINGS; do
    bdir=$(mktemp -d /dev/shm/vdlvm-basync.XXXXXX)
    edir=$(mktemp -d "$EXT4/vdlvm-basync.XXXXXX")
    cleanup_fn rm -rf "$bdir" "$edir"
    data=$(dev "$b" data)
    start_tgtd
    tid=1
    tgt_target_new $tid "$b-rdwr"; tgt_lun_new $tid 1 rdwr "$data"; url[$b.rdwr]=$(iscsi_url $tid 1)
    tid=2
    tgt_target_new $tid "$b-aio"; tgt_lun_new $tid 1 aio "$data"; url[$b.aio]=$(iscsi_url $tid 1)
    conf=$(pool "$b" "pa$b")
    tid=3
    tgt_target_new $tid "$b-vdlvm"; tgt_lun_new $tid 1 vdlvm "pa$b/vol" "conf=$conf"; url[$b.vdlvm]=$(iscsi_url $tid 1)
    if [ "$MODDIR" = off ]; then
        VDLVM_ASYNC=0 start_tgtd
    else
        start_tgtd --module-dir "$MODDIR"
    fi
    conf=$(pool "$b" "pb$b")
    tgt_target_new 1 "$b-before"; tgt_lun_new 1 1 vdlvm "pb$b/vol" "conf=$conf"; url[$b.vdlvm-before]=$(iscsi_url 1 1)
    for s in rdwr vdlvm vdlvm-before; do
        timeout 300 "$VDLOAD" write --pattern seq --bs 1M --qd 8 --count "$LUN_MIB" \
            --range "0:$lun" --quiet "${url[$b.$s]}" >/dev/null || fail "prefill $b $s"
    done
done
note "stores ready; load average $(cut -d' ' -f1-3 /proc/loadavg)"

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
                # shellcheck disable=SC2086
                out=$(timeout $(( SECS + 60 )) "$VDLOAD" ${args[$w]} --qd 32 --time "$SECS" \
                    --range "0:$lun" --json --quiet "${url[$b.$s]}") || fail "$b $s $w run $r: $out"
                iops=$(python3 -c 'import json,sys; t=json.loads(sys.argv[1])["total"]; print("%.0f %.1f" % (t["iops"], t["mbps"]))' "$out")
                echo "$b $s $w $r $iops" >> "$raw"
            done
        done
    done
    note "repetition $r done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$raw" "$RUNS" "$SECS" "$load_before" "$load_after" "$MODDIR" <<'PY'
import sys, statistics, collections
raw, runs, secs, lb, la, moddir = sys.argv[1:]
d = collections.defaultdict(list)
for line in open(raw):
    b, s, w, r, iops, mbps = line.split()
    d[(b, s, w)].append(float(iops))
med = {k: statistics.median(v) for k, v in d.items()}
before = "VDLVM_ASYNC=0 (this build)" if moddir == "off" else moddir
print(f"# Asynchronous path (issue 14): medians of {runs} runs of {secs} s, qd 32")
print(f"load average before {lb}, after {la}; vdlvm-before: {before}")
print()
print("| backing | workload | rdwr | aio | vdlvm-before | vdlvm (async) | before/rdwr | before/aio | async/rdwr | async/aio | async/before |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for b in dict.fromkeys(k[0] for k in med):
    for w in dict.fromkeys(k[2] for k in med):
        g = lambda s: med.get((b, s, w), 0)
        rd, ai, bf, asy = g("rdwr"), g("aio"), g("vdlvm-before"), g("vdlvm")
        q = lambda a, c: f"{a / c:.2f}" if c else "-"
        print(f"| {b} | {w} | {rd:.0f} | {ai:.0f} | {bf:.0f} | {asy:.0f} | {q(bf, rd)} | {q(bf, ai)} | {q(asy, rd)} | {q(asy, ai)} | {q(asy, bf)} |")
print()
print("IOPS (1 MiB rows: IOPS x 1 MiB = bytes/s).  Raw runs:")
for k in sorted(d):
    print("   ", *k, " ".join(f"{x:.0f}" for x in d[k]))
PY
