#!/bin/bash
# Usage: BUILD=build tests/bench/qos-fair.sh [RUNS]
#
# Fairness measurement (issue 17, docs/qos.md): the p99 latency of a light
# tenant (vol1: 4 KiB random reads at qd 1 over 32 MiB of written data)
# alone, and beside a heavy tenant on the same pool, same devices, same
# tgtd (vol0: 4 KiB random writes at qd 32), with the heavy tenant's write
# limited to WLIMIT IOPS (default 2000) and without a limit.  The target of
# the issue: with the limit, the reader's p99 beside the writer is at most
# 2x its p99 alone.
#
# One pool of two sparse files, each volume in its own target of one tgtd.
# RUNS (default 3) repetitions of each mode, interleaved (limit, none,
# limit, ...; the limit is changed live with `vdlvm vol set`) so that drift
# of the machine's load hits both alike.  Each run: reader 5 s alone, then
# the writer starts, and after 1.5 s the reader runs 5 s beside it.
# Prints every run, then the medians per mode, and the load average before
# and after (other work on the machine shows in the alone p99).
#
# Baseline (mode "rdwr"): the same two-volume scenario on tgt's own rdwr
# store, in the same tgtd: two more targets, each one LUN on its own file in
# the same folder ($tmp, the same file system as the pool's files), the
# writer's 128 MiB and the reader's 64 MiB with the same 32 MiB written
# first.  rdwr has no limits, so it answers whether the reader's p99 rise
# beside an unlimited writer is tgtd's and the machine's (present with rdwr
# too) or the module's.  Its runs are interleaved with the others.
#
# Environment: BUILD, WLIMIT, INLINE=0 (VDLVM_INLINE=0: the module's
# main-thread fast path off), MODDIR (a module folder other than BUILD's),
# MODES (default "WLIMIT none rdwr"; e.g. MODES="none rdwr" for the
# fairness-without-limits comparison only).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires_file "$BUILD/vdload"
requires command -v python3

RUNS=${1:-3}
WLIMIT=${WLIMIT:-2000}
MODES=${MODES:-"$WLIMIT none rdwr"}
MiB=$((1024 * 1024))
VDLOAD=$BUILD/vdload

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
conf=$(make_pool_conf pool0 2 256MiB 4MiB)
vdlvm pool create "$conf" >/dev/null
vdlvm vol create pool0/vol0 --size 128MiB >/dev/null
vdlvm vol create pool0/vol1 --size 64MiB >/dev/null
export VDLVM_INLINE=${INLINE:-1}
start_tgtd --module-dir "${MODDIR:-$BSDIR}"
tgt_target_new 1 t0
tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf"
tgt_target_new 2 t1
tgt_lun_new 2 1 vdlvm pool0/vol1 "conf=$conf"
# The baseline: tgt's rdwr store, files of the volumes' sizes.
truncate -s 128M "$tmp/rdwr-w.img"
truncate -s 64M "$tmp/rdwr-r.img"
tgt_target_new 3 r0
tgt_lun_new 3 1 rdwr "$tmp/rdwr-w.img"
tgt_target_new 4 r1
tgt_lun_new 4 1 rdwr "$tmp/rdwr-r.img"
declare -A wurl rurl
wurl[vdlvm]=$(iscsi_url 1 1)
rurl[vdlvm]=$(iscsi_url 2 1)
wurl[rdwr]=$(iscsi_url 3 1)
rurl[rdwr]=$(iscsi_url 4 1)
# The readers' data written once (a VM disk with data, not holes).
for store in vdlvm rdwr; do
    timeout 60 "$VDLOAD" write --bs 65536 --qd 8 --pattern seq --count 512 \
        --range 0:$((32 * MiB)) --quiet "${rurl[$store]}" >/dev/null
done

# p99 FILE: "IOPS p50 p99" of a vdload --json result, microseconds.
stat3() {
    python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['total']; print('%d %.0f %.0f' % (t['iops'], t['lat_us']['p50'], t['lat_us']['p99']))" "$1"
}

results=$tmp/results
: > "$results"
for (( i = 1; i <= RUNS; i++ )); do
    for mode in $MODES; do
        store=vdlvm
        case $mode in
            none) lim=0 ;;
            rdwr) store=rdwr ;;
            *) lim=$mode ;;
        esac
        u0=${wurl[$store]}
        u1=${rurl[$store]}
        [ "$store" = rdwr ] ||
            vdlvm vol set pool0/vol0 --iops-limit "$lim" >/dev/null
        timeout 60 "$VDLOAD" read --bs 4096 --qd 1 --time 5 \
            --range 0:$((32 * MiB)) --json "$u1" > "$tmp/alone.json"
        timeout 60 "$VDLOAD" write --bs 4096 --qd 32 --time 8 --json "$u0" \
            > "$tmp/w.json" &
        wp=$!
        sleep 1.5
        timeout 60 "$VDLOAD" read --bs 4096 --qd 1 --time 5 \
            --range 0:$((32 * MiB)) --json "$u1" > "$tmp/with.json"
        wait "$wp"
        read -r a_iops a_p50 a_p99 < <(stat3 "$tmp/alone.json")
        read -r w_iops w_p50 w_p99 < <(stat3 "$tmp/with.json")
        read -r h_iops h_p50 h_p99 < <(stat3 "$tmp/w.json")
        echo "$mode $a_p50 $a_p99 $w_p50 $w_p99 $h_iops $a_iops $w_iops" >> "$results"
        echo "run $i $mode $(cut -d' ' -f1 /proc/loadavg)" >> "$tmp/loads"
        printf 'run %d wlimit=%-5s reader alone p50 %5s p99 %6s us | beside writer p50 %5s p99 %6s us | writer %6s IOPS | ratio p99 %s\n' \
            "$i" "$mode" "$a_p50" "$a_p99" "$w_p50" "$w_p99" "$h_iops" \
            "$(python3 -c "print('%.2f' % ($w_p99 / max($a_p99, 1)))")"
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$results" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
print("medians (us) over %d runs:" % max(len(v) for v in rows.values()))
print("  %-8s %10s %10s %12s %12s %12s %8s %8s  %s" % ("mode", "alone p50", "alone p99",
      "beside p50", "beside p99", "writer IOPS", "p99 x", "p50 x", "p99 x per run"))
for mode, v in rows.items():
    med = [statistics.median(c) for c in zip(*v)]
    ratios = [r[3] / max(r[1], 1) for r in v]
    r50 = [r[2] / max(r[0], 1) for r in v]
    print("  %-8s %10.0f %10.0f %12.0f %12.0f %12.0f %8.2f %8.2f  %s" % (mode, med[0], med[1],
          med[2], med[3], med[4], statistics.median(ratios), statistics.median(r50),
          " ".join("%.2f" % x for x in ratios)))
EOF
echo "load average before: $load_before; after: $load_after; cores: $(nproc)"
echo "1-min load average after each run: $(awk '{printf "%s%s:%s", (NR>1?" ":""), $3, $4}' "$tmp/loads")"
