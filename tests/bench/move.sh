#!/bin/bash
# The extent mover's numbers (issue 12): the copy rate of an unlimited
# `vdlvm dev evacuate` against `dd` of the same bytes between the same
# backing files, and the foreground 4 KiB random read IOPS (vdload, qd 32)
# during an unlimited evacuation against without one.  Medians of RUNS.
#
# Pool: 2*RUNS+1 file devices of DEV_MIB on the file system of $TMPDIR,
# 4 MiB extents; a linear volume of VOL_MIB on d0 (first fit), exported by
# tgtd with the module and filled through iSCSI.  Round k evacuates d(k-1)
# to d(k) (--to): odd rounds alone (copy rate: extents moved * 4 MiB /
# wall time of `evacuate --wait`, and `dd bs=256k conv=notrunc,fdatasync`
# of the same number of bytes from that round's source file to a fresh
# file), even rounds under a vdload read load started with the evacuation
# (IOPS during the move; a run counts only if the evacuation outlasted it)
# followed by a run without a move once it is over.
#
#   bash tests/bench/move.sh [--runs N] [--vol-mib M]
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires python3 --version
VDLOAD=$BUILD/vdload
requires_file "$VDLOAD"

RUNS=3 VOL_MIB=384
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --vol-mib) VOL_MIB=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--vol-mib M]" >&2; exit 2 ;;
    esac
done
NDEV=$(( 2 * RUNS + 1 ))
DEV_MIB=$(( VOL_MIB + 64 ))
EXT=$((4 * 1024 * 1024))
conf=$(make_pool_conf pool0 "$NDEV" ${DEV_MIB}MiB 4MiB)
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
vdlvm vol create pool0/vol0 --size ${VOL_MIB}MiB > /dev/null || fail "vol create failed"
start_tgtd
tgt_target_new 1 pool0 || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"
url=$(iscsi_url 1 1)
wait_for 10 test -S "$VDLVM_RUNDIR/pool0.sock" || fail "no control socket"
timeout 300 "$VDLOAD" write --pattern seq --bs 1M --qd 8 --count "$VOL_MIB" --quiet "$url" > /dev/null ||
    fail "filling vol0 failed"

iops() { python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["total"]["iops"]))' "$1"; }
readrun() { # OUT: 4 KiB random reads, qd 32, 2 s
    timeout 60 "$VDLOAD" read --bs 4k --qd 32 --time 2 --json --quiet "$url" > "$1" ||
        fail "read run failed: $(cat "$1")"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
evacuating() { vdlvm status pool0 --json | python3 -c 'import json,sys
m=json.load(sys.stdin)["move"]; sys.exit(0 if m["evacuating"] or m["active"] else 1)'; }
extents() { vdlvm status pool0 --json | python3 -c 'import json,sys
d=json.load(sys.stdin); print([x["used_extents"] for x in d["devices"] if x["name"]==sys.argv[1]][0])' "$1"; }

base=() mover=() ddr=() during=()
readrun "$tmp/warm.json" # the first run after the fill warms up
for (( k = 1; k < NDEV; k++ )); do
    src=d$((k - 1)) dst=d$k
    n=$(extents "$src")
    bytes=$(( n * EXT ))
    if (( k % 2 )); then
        t0=$EPOCHREALTIME
        vdlvm dev evacuate "pool0/$src" --to "$dst" --wait > "$tmp/e.out" 2>&1 ||
            fail "evacuate $src failed: $(cat "$tmp/e.out")"
        t1=$EPOCHREALTIME
        mover+=("$(awk -v b="$bytes" -v a="$t0" -v c="$t1" 'BEGIN { printf "%.0f", b / (c - a) / 1048576 }')")
        rm -f "$tmp/dd.img"
        t0=$EPOCHREALTIME
        dd if="$tmp/pool0-$src.img" of="$tmp/dd.img" bs=256k count=$(( bytes / 262144 )) \
            skip=16 conv=notrunc,fdatasync status=none || fail "dd failed"
        t1=$EPOCHREALTIME
        ddr+=("$(awk -v b="$bytes" -v a="$t0" -v c="$t1" 'BEGIN { printf "%.0f", b / (c - a) / 1048576 }')")
        rm -f "$tmp/dd.img"
        echo "round $k: $src -> $dst, $n extents: mover ${mover[-1]} MiB/s, dd ${ddr[-1]} MiB/s" >&2
    else
        vdlvm dev evacuate "pool0/$src" --to "$dst" > "$tmp/e.out" 2>&1 ||
            fail "evacuate $src failed: $(cat "$tmp/e.out")"
        readrun "$tmp/during.json"
        if evacuating; then
            during+=("$(iops "$tmp/during.json")")
            echo "round $k: $src -> $dst, $n extents: $(iops "$tmp/during.json") IOPS during the move" >&2
        else
            echo "round $k: the evacuation ended before the read run (not counted)" >&2
        fi
        for (( i = 0; i < 600; i++ )); do evacuating || break; sleep 0.1; done
        # and a run without a move right after (the same cache and load)
        readrun "$tmp/base.json"
        base+=("$(iops "$tmp/base.json")")
    fi
done
load=$(cut -d' ' -f1-3 /proc/loadavg)
bm=$(printf '%s\n' "${base[@]}" | median)
mm=$(printf '%s\n' "${mover[@]}" | median)
dm=$(printf '%s\n' "${ddr[@]}" | median)
echo "copy rate (MiB/s, median of ${#mover[@]}): mover $mm, dd $dm, ratio $(awk -v a="$mm" -v b="$dm" 'BEGIN { printf "%.2f", a / b }') [runs: mover ${mover[*]}; dd ${ddr[*]}]"
if [ "${#during[@]}" -gt 0 ]; then
    um=$(printf '%s\n' "${during[@]}" | median)
    echo "4 KiB random read IOPS qd 32 (median): without a move $bm, during an unlimited evacuation $um, kept $(awk -v a="$um" -v b="$bm" 'BEGIN { printf "%.0f", 100 * a / b }') % [runs: ${base[*]}; ${during[*]}]"
else
    echo "4 KiB random read IOPS qd 32 (median): without a move $bm; no run fell wholly inside an evacuation (increase --vol-mib)"
fi
echo "backing: files on $(df -T "$tmp" | awk 'NR == 2 { print $2 }'); load average $load"
