#!/bin/bash
# Tiering benchmark (issue 13's target): a 256 MiB volume placed on a slow
# device, a peer's LUN over a veth link, in a pool that also holds a fast
# device, a 64 MiB local file.  A 4 KiB random-read load at queue depth 32
# where 90% of the commands fall on 10% of the volume (vdload --hot 90:10:
# every tenth 4 MiB region, the same regions in every run) is measured
# before a tiering pass and after it; the speed-up is after / before.  Then
# a 1 MiB sequential read of the whole volume (a backup) runs, and a second
# pass must not demote the hot set (the stream is not heat).
#
#   tests/bench/tier.sh [--runs N] [--time SECONDS] [--dir DIR]
#
# `make bench` runs it with --runs 3 --time 3 (about a minute on an idle
# machine) and TIER_REPORT=bench/results/tier-latest.md (the report is
# copied there).
#
# Two network namespaces: nodea (198.51.100.1) runs tgtd with the module,
# the pool and the load; nodeb (198.51.100.2) runs a stock tgtd exporting
# the slow disk (rdwr on a file).  Nothing is added to the machine's own
# namespace.  The backing files go to DIR (default: the test's temporary
# folder); say which file system in the report.  Output: a Markdown table
# on stdout (IOPS of every run, the medians, the ratio) and the check of the
# target (exit 1 when the speed-up is below 1.5x or the hot set moved back).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v ip
requires jq --version
requires_file "$BUILD/vdload"

RUNS=3 SECS=4 DIR=
cmdline="tests/bench/tier.sh $*"
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --time) SECS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        *) echo "usage: $0 [--runs N] [--time SECONDS] [--dir DIR]" >&2; exit 2 ;;
    esac
done
DIR=${DIR:-$tmp}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
MiB=$((1024 * 1024))
VOL_MIB=256
HOT=90:10

netns_setup_pair
A=$netns_a B=$netns_b
in_a() { ip netns exec "$A" "$@"; }
vdlvm_a() { in_a timeout 300 "$VDLVM" "$@"; }

# ---- nodeb: the slow disk -----------------------------------------------------
start_tgtd --netns "$B" --addr "$netns_b_addr" --no-module
truncate -s $((VOL_MIB + 64))M "$DIR/tier-slow.img"
cleanup_fn rm -f "$DIR/tier-slow.img" "$DIR/tier-fast.img"
tgt_target_new 1 slow || fail "nodeb: cannot create target"
tgt_lun_new 1 1 rdwr "$DIR/tier-slow.img" || fail "nodeb: cannot export its disk"
url_b=$(iscsi_url 1 1)

# ---- nodea: the pool, the volume on the slow device --------------------------
conf=$tmp/tb.yaml
cat > "$conf" <<EOF
pool: tb
extent_size: 4MiB
tiering:
  interval: 1h
  rate: 0
  fast_free: 10%
devices:
  - name: fast0
    path: $DIR/tier-fast.img
    size: 64MiB
    tier: fast
  - name: slow0
    iscsi: $url_b
    node: nodeb
EOF
vdlvm_a pool create "$conf" >&2 || fail "pool create failed"
# fill fast0 so that the volume gets slow0 only (one-extent volumes go to
# the first device with room), then free it again
fast_free() {
    vdlvm_a -c "$conf" status tb --json | jq '.devices[] | select(.name=="fast0") | .extents - .used_extents'
}
n=0
while [ "$(fast_free)" -gt 0 ]; do
    [ $n -lt 64 ] || fail "fast0 does not fill up"
    vdlvm_a -c "$conf" vol create tb/fill$n --size 4MiB >/dev/null || fail "vol create fill$n failed"
    n=$((n + 1))
done
vdlvm_a -c "$conf" vol create tb/vol --size ${VOL_MIB}MiB >&2 || fail "vol create failed"
for ((i = 0; i < n; i++)); do
    vdlvm_a -c "$conf" vol remove tb/fill$i >/dev/null || fail "vol remove fill$i failed"
done

start_tgtd --netns "$A" --addr "$netns_a_addr"
tgt_target_new 1 tier || fail "nodea: cannot create target"
tgt_lun_new 1 1 vdlvm tb/vol "conf=$conf" || fail "cannot export tb/vol"
url=$(iscsi_url 1 1)
vdload_a() { in_a timeout 120 "$BUILD/vdload" "$@"; }

# every block written once (never-written remote areas would read fast)
vdload_a write --pattern seq --bs 1M --qd 8 --count $VOL_MIB --quiet "$url" >/dev/null ||
    fail "filling the volume failed"

tiers() { vdlvm_a tier status tb/vol --json; }
on_fast() { tiers | jq '[.extents[] | select(.tier == "fast")] | length'; }
[ "$(on_fast)" = 0 ] || fail "the volume is not all on the slow device"

# iops PHASE REP: one 4 KiB hot-set random-read run; its IOPS appended to
# the array named PHASE and a row to rows
rows=()
before=() after=()
iops() {
    local out v
    out=$(vdload_a read --pattern rand --bs 4k --qd 32 --hot $HOT --time "$SECS" \
        --json --quiet "$url") || fail "vdload ($1 run $2) failed"
    v=$(jq -r '(.total // .read).iops | floor' <<<"$out")
    [ -n "$v" ] && [ "$v" != null ] || fail "cannot parse vdload output: $out"
    rows+=("| $1 | $2 | $v |")
    eval "$1+=(\"\$v\")"
}
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= RUNS; r++)); do iops before "$r"; done

vdlvm_a tier run tb/vol --dry-run >&2 || fail "tier run --dry-run failed"
t0=$EPOCHREALTIME
vdlvm_a tier run tb/vol --wait >&2 || fail "tier run failed"
t1=$EPOCHREALTIME
promoted=$(on_fast)
[ "$promoted" -gt 0 ] || fail "the pass promoted nothing"
tiers > "$tmp/after-pass.json"

for ((r = 1; r <= RUNS; r++)); do iops after "$r"; done

# a backup: the whole volume read sequentially; then another pass
vdload_a read --pattern seq --bs 1M --qd 8 --count $VOL_MIB --quiet "$url" >/dev/null ||
    fail "sequential read failed"
vdlvm_a tier run tb/vol --wait >&2 || fail "second tier run failed"
tiers > "$tmp/after-seq.json"
kept=$(jq -n --slurpfile a "$tmp/after-pass.json" --slurpfile b "$tmp/after-seq.json" \
    '[$a[0].extents[] | select(.tier == "fast") | .le] as $h |
     [$b[0].extents[] | select(.tier == "fast") | .le] as $k |
     ($h - $k) | length')
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

mb=$(median "${before[@]}") ma=$(median "${after[@]}")
ratio=$(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.2f", a / b }')
pass_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
hot_regions=$(( (VOL_MIB / 4 * 10 + 99) / 100 ))
fs=$(df -T "$DIR" | awk 'NR == 2 { print $2 }')
{
    echo "# vdlvm tiering benchmark, $(date -u '+%Y-%m-%d %H:%M')"
    echo
    echo "Command: \`${cmdline% }\` (\`make bench\` runs it with --runs 3 --time 3)."
    echo
    echo "Volume ${VOL_MIB} MiB on slow0 (nodeb's rdwr LUN over a veth pair, file on $fs),"
    echo "fast0 a 64 MiB local file ($fs); vdload 4 KiB random reads, qd 32, --hot $HOT"
    echo "($hot_regions hot 4 MiB regions), $RUNS runs of ${SECS} s per phase."
    echo "Load average before: $load_before; after: $load_after."
    echo
    echo "| phase | run | IOPS |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Median IOPS before the pass: $mb; after: $ma; speed-up **${ratio}x** (target 1.5x)."
    echo "The pass promoted $promoted extents in ${pass_s} s; after a 1 MiB sequential read of"
    echo "the whole volume and a second pass, $kept of them had left the fast device (target 0)."
} | tee "$tmp/report.md"
[ -z "${TIER_REPORT:-}" ] || cp "$tmp/report.md" "$TIER_REPORT"
awk -v r="$ratio" 'BEGIN { exit !(r >= 1.5) }' || fail "speed-up ${ratio}x is below 1.5x"
[ "$kept" = 0 ] || fail "$kept hot extents were demoted after the sequential read"
note "ok: ${ratio}x"
