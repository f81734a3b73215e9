#!/bin/bash
# vdload against a vdlvm linear LUN (two pool devices, so the volume spans
# both): a verify run finds nothing wrong, survives a dropped session and a
# frozen tgtd, and after blocks of the device files are damaged behind the
# target's back reports exactly those LBAs.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/vdload-common.sh"
requires_tgtd
requires_file "$VDLOAD"
requires_vdlvm

conf=$(make_pool_conf pool0 2 40M 4M)
vdlvm pool create "$conf" >/dev/null || fail "vdlvm pool create failed"
vdlvm -c "$conf" vol create pool0/vol0 --size 64M >/dev/null || fail "vdlvm vol create failed"
# The first run of extents lies on d0; test the 4 MiB around its end so the
# range straddles both device files.
status=$(vdlvm -c "$conf" status pool0/vol0 --json) || fail "vdlvm status failed"
first=$(grep -o '"le":0,"count":[0-9]*' <<<"$status" | head -n 1 | sed 's/.*://')
[ -n "$first" ] && [ "$first" -lt 16 ] || fail "volume does not span two devices: $status"
RANGE_START=$(( first * 4 * 1024 * 1024 - 2 * 1024 * 1024 ))
note "range starts at byte $RANGE_START, device boundary at $(( first * 4 ))MiB"
start_tgtd
tgt_target_new 1 vol0 || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot create vdlvm LUN"
url=$(iscsi_url 1 1)

vdload_roundtrip "$url" "$tmp"/pool0-d*.img
note "ok"
