#!/bin/bash
# Draws docs/tiering-heatmap.png: the heat map of `vdlvm tier status
# --png` after a short scripted history, so that the picture shows what a
# person sees on a real pool (heat over time, where each extent is).
#
#   BUILD=build tests/bench/tier-heatmap.sh OUT.png
#
# A pool of one fast and one slow file device (tiering interval 3 s: a
# history row per 3 s), a 64 MiB volume on the slow one, exported by a
# tgtd.  Then, one phase after the other: random 4 KiB reads on extents
# 2-3 (9 s), a pass (`tier run --wait`: they go to the fast device); the
# hot spot moves to extents 10-12 (9 s), a pass; a 1 MiB sequential read
# of the whole volume (a backup: not heat, 6 s of idle rows); the PNG.
# Not a test: it checks only that each step succeeds.  About a minute.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires gnuplot --version
requires jq --version
requires_file "$BUILD/vdload"
[ $# = 1 ] || { echo "usage: $0 OUT.png" >&2; exit 2; }
out=$(realpath -m "$1")

conf=$tmp/hm.yaml
cat > "$conf" <<EOF
pool: hm
extent_size: 4MiB
tiering:
  enabled: false # passes only by `tier run` here; heat decays all the same
  interval: 3s
  rate: 0
  fast_free: 10%
devices:
  - name: fast0
    path: $tmp/hm-fast0.img
    size: 64MiB
    tier: fast
  - name: slow0
    path: $tmp/hm-slow0.img
    size: 128MiB
EOF
vdlvm pool create "$conf" >&2 || fail "pool create failed"
# fill fast0 so that the volume gets slow0 only, then free it again
fast_free() {
    vdlvm status hm --json | jq '.devices[] | select(.name=="fast0") | .extents - .used_extents'
}
n=0
while [ "$(fast_free)" -gt 0 ]; do
    [ $n -lt 64 ] || fail "fast0 does not fill up"
    vdlvm vol create hm/fill$n --size 4MiB >/dev/null || fail "vol create fill$n failed"
    n=$((n + 1))
done
vdlvm vol create hm/vol0 --size 64MiB >&2 || fail "vol create failed"
for ((i = 0; i < n; i++)); do
    vdlvm vol remove hm/fill$i >/dev/null || fail "vol remove fill$i failed"
done

start_tgtd
tgt_target_new 1 vol0 || fail "cannot create target"
tgt_lun_new 1 1 vdlvm hm/vol0 "conf=$conf" || fail "cannot export hm/vol0"
url=$(iscsi_url 1 1)
MiB=$((1024 * 1024))
load() { # FIRST-EXTENT N SECONDS: random 4 KiB reads on those extents
    timeout 60 "$BUILD/vdload" read --pattern rand --bs 4k --qd 4 --time "$3" \
        --range $(($1 * 4 * MiB)):$(($2 * 4 * MiB)) --quiet "$url" >/dev/null ||
        fail "vdload on extents $1+$2 failed"
}
timeout 60 "$BUILD/vdload" write --pattern seq --bs 1M --qd 8 --count 64 --quiet "$url" \
    >/dev/null || fail "filling the volume failed"
load 2 2 9
vdlvm tier run hm/vol0 --wait >&2 || fail "first pass failed"
load 10 3 9
vdlvm tier run hm/vol0 --wait >&2 || fail "second pass failed"
timeout 60 "$BUILD/vdload" read --pattern seq --bs 1M --qd 8 --count 64 --quiet "$url" \
    >/dev/null || fail "sequential read failed"
sleep 6
vdlvm tier status hm/vol0 >&2
vdlvm tier status hm/vol0 --png "$out" >&2 || fail "tier status --png failed"
note "heat map written to $out"
