#!/bin/bash
# Clones of a golden image (issue 11), with a real tgtd:
#   1. a raw image with a pattern imported, snapshot gold@base, three clones
#      made through the tgtd's control socket (tgtd holds the pool);
#   2. each clone exported as a LUN and written with its own pattern through
#      iSCSI: each reads its own writes and the golden data elsewhere; the
#      snapshot is unchanged; space used is image + written; pool check
#      clean; vol list and status show the clones' origin and own/shared
#      bytes; UNMAP on a clone frees its own chunk over an image hole and
#      zeroes its copy of a golden chunk; a clone cannot be extended yet;
#   3. the volume holding the clones' chunks cannot be removed; the
#      snapshot can (the clones keep its chunks);
#   4. kill -9 of tgtd during a write load on a clone: every write qemu-io
#      reported done reads back after a restart, pool check is clean;
#   5. the clones removed in a random order, pool check after each.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/thin-common.sh"
thin_requires

# qemu_io with several commands: URL CMD...
qemu_ios() {
    local url=$1 c args=()
    shift
    for c in "$@"; do args+=(-c "$c"); done
    timeout 120 qemu-io -f raw "${args[@]}" "$url" > "$tmp/qio.out" 2>&1 || return
    ! grep -Eq "failed|error|Pattern verification" "$tmp/qio.out"
}

conf=$(thin_pool_conf pool0 2 160MiB)
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
img=$tmp/img
mkdir -p "$img"
qemu-img create -q -f raw "$img/gold.raw" 32M
qemu-io -f raw -c "write -P 0x60 0 16M" "$img/gold.raw" > /dev/null || fail "cannot write gold.raw"
out=$(vdlvm vol import pool0/gold "$img/gold.raw" 2>&1) || fail "import: $out"
vdlvm snap create pool0/gold@base > /dev/null || fail "snap create failed"

start_tgtd
tgt_target_new 1 clone || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/gold@base "conf=$conf" || fail "cannot export gold@base"

# ---- 1.-2. three clones, each written through iSCSI -------------------------
for i in 1 2 3; do
    out=$(vdlvm vol clone pool0/gold@base pool0/vm$i 2>&1) || fail "vol clone vm$i: $out"
    note "$out"
done
gold_alloc=$(vol_field pool0/gold allocated)
[ "$gold_alloc" = $((16 * MiB)) ] || fail "3 clones took space: allocated $gold_alloc, want 16 MiB"
for i in 1 2 3; do
    tgt_lun_new 1 $((i + 1)) vdlvm pool0/vm$i "conf=$conf" || fail "cannot export vm$i"
    qemu_ios "$(iscsi_url 1 $((i + 1)))" "write -P 0x7$i $((i * MiB)) 1M" "write -P 0x8$i 20M 64k" ||
        fail "write to vm$i: $(cat "$tmp/qio.out")"
done
for i in 1 2 3; do
    u=$(iscsi_url 1 $((i + 1)))
    qemu_ios "$u" "read -P 0x7$i $((i * MiB)) 1M" "read -P 0x8$i 20M 64k" ||
        fail "vm$i does not read its own writes: $(cat "$tmp/qio.out")"
    qemu_ios "$u" "read -P 0x60 0 $((i * MiB))" "read -P 0x60 $(((i + 1) * MiB)) $(((15 - i) * MiB))" ||
        fail "vm$i does not read the golden data: $(cat "$tmp/qio.out")"
    qemu_io "$u" "read -P 0 16M 4M" || fail "vm$i: a hole of the image is not zero"
done
qemu_ios "$(iscsi_url 1 1)" "read -P 0x60 0 16M" "read -P 0 16M 16M" ||
    fail "the golden snapshot changed: $(cat "$tmp/qio.out")"
vdlvm vol list pool0 >&2
alloc=$(vol_field pool0/gold allocated)
# image + what the clones wrote: 3 x (1 MiB + one 64 KiB chunk)
[ "$alloc" = $((16 * MiB + 3 * (MiB + 64 * 1024))) ] || fail "allocated $alloc after the clone writes"
out=$(vdlvm pool check pool0 2>&1) || fail "pool check: $out"
vdlvm vol list pool0 --json | grep -q '"name":"vm1","origin":"gold@base"' || fail "vol list --json: no vm1 of gold@base"
# status lists the clones (origin, own and shared bytes), JSON too
vdlvm status pool0 | grep -E "^  vm1 .*clone of gold@base" > /dev/null ||
    fail "status pool0 does not list vm1 as a clone of gold@base: $(vdlvm status pool0)"
vdlvm status pool0 --json | grep -q '"clones":\[{"name":"vm1","clone":true,"origin":"gold@base"' ||
    fail "status pool0 --json: no clones array with vm1"
[ "$(vol_field pool0/vm3 exclusive)" = $((MiB + 64 * 1024)) ] || fail "vm3: exclusive != 1 MiB + 64 KiB"
[ "$(vol_field pool0/vm3 shared)" = $((15 * MiB)) ] || fail "vm3: shared != 15 MiB"
vdlvm status pool0/vm3 | grep -q "clone of  pool0/gold@base" || fail "status pool0/vm3: no origin"
# the volume's own status lists its clones (a clone of a clone too)
out=$(vdlvm vol clone pool0/vm1 pool0/vm1b 2>&1) || fail "vol clone of a clone: $out"
vdlvm status pool0/gold | grep -E "^  clones +vm1 \(of gold@base\), vm2 \(of gold@base\), vm3 \(of gold@base\), vm1b \(of vm1\)$" > /dev/null ||
    fail "status pool0/gold does not list its clones: $(vdlvm status pool0/gold)"
vdlvm status pool0/gold --json | grep -q '"clones":\[{"name":"vm1","origin":"gold@base"},{"name":"vm2","origin":"gold@base"},{"name":"vm3","origin":"gold@base"},{"name":"vm1b","origin":"vm1"}\]' ||
    fail "status pool0/gold --json: no clones: $(vdlvm status pool0/gold --json)"
vdlvm status pool0 --json | grep -q '"name":"gold",.*"clones":\[{"name":"vm1","origin":"gold@base"}' ||
    fail "status pool0 --json: gold's clones missing"
out=$(vdlvm vol remove pool0/vm1b 2>&1) || fail "vol remove vm1b: $out"
# a clone LUN is thin (UNMAP): its own chunk over a hole of the image is
# freed, its copy of a golden chunk becomes zeroes (the image's data must
# not show through again); the image and the other clones are untouched
u3=$(iscsi_url 1 4)
qemu_io "$u3" "discard 20M 64k" || fail "discard on vm3: $(cat "$tmp/qio.out")"
qemu_io "$u3" "discard $((3 * MiB)) 1M" || fail "discard on vm3: $(cat "$tmp/qio.out")"
qemu_ios "$u3" "read -P 0 20M 64k" "read -P 0 $((3 * MiB)) 1M" "read -P 0x60 0 3M" ||
    fail "vm3 after discard: $(cat "$tmp/qio.out")"
[ "$(vol_field pool0/vm3 exclusive)" = $((MiB)) ] || fail "vm3 after discard: exclusive $(vol_field pool0/vm3 exclusive), want 1 MiB"
alloc=$(vol_field pool0/gold allocated)
[ "$alloc" = $((16 * MiB + 3 * MiB + 2 * 64 * 1024)) ] || fail "allocated $alloc after the clone's discard"
qemu_ios "$(iscsi_url 1 3)" "read -P 0x72 $((2 * MiB)) 1M" "read -P 0x82 20M 64k" ||
    fail "vm2 changed by vm3's discard: $(cat "$tmp/qio.out")"
out=$(vdlvm pool check pool0 2>&1) || fail "pool check after the clone's discard: $out"
expect_fail 1 "cannot be extended" vdlvm vol extend pool0/vm3 --size 64MiB

# ---- 3. removal rules ----------------------------------------------------------
expect_fail 4 "clone" vdlvm vol remove pool0/gold
tgt_lun_delete 1 1 || fail "cannot delete the snapshot LUN"
vdlvm snap remove pool0/gold@base > /dev/null || fail "snap remove with clones failed"
qemu_io "$(iscsi_url 1 2)" "read -P 0x60 0 1M" || fail "vm1 lost golden data after snap remove"
out=$(vdlvm pool check pool0 2>&1) || fail "pool check after snap remove: $out"

# ---- 4. kill -9 during a clone write load ------------------------------------------
load=()
for (( i = 0; i < 2048; i++ )); do
    load+=(-c "write -P 0xcc $((4 * MiB + i * 4096)) 4k")
done
url2=$(iscsi_url 1 3)
( rc=0; timeout 60 qemu-io -f raw "${load[@]}" "$url2" > "$tmp/load.out" 2>&1 || rc=$?; echo "$rc" > "$tmp/load.rc" ) &
load_pid=$!
cleanup_fn kill_quiet "$load_pid"
wait_for 20 grep -q wrote "$tmp/load.out" || fail "the load did not start"
sleep 0.$((RANDOM % 5 + 1))
kill -KILL "$tgtd_pid" 2>/dev/null || true
wait "$tgtd_pid" 2>/dev/null || true
rm -f "/var/run/tgtd/socket.$tgtd_ctl" "/var/run/tgtd/socket.$tgtd_ctl.lock"
_forget_tgtd "$tgtd_pid"
kill_quiet "$load_pid"
wait "$load_pid" 2>/dev/null || true
acked=$(grep -c wrote "$tmp/load.out" || true)
note "kill -9 after $acked acknowledged clone writes"
out=$(vdlvm pool check pool0 2>&1) || fail "pool check after kill -9: $out"
start_tgtd
tgt_target_new 1 clone || fail "cannot create target again"
tgt_lun_new 1 1 vdlvm pool0/vm2 "conf=$conf" || fail "cannot export vm2 again"
url2=$(iscsi_url 1 1)
[ "$acked" -gt 0 ] || fail "no write acknowledged before the kill"
qemu_io "$url2" "read -P 0xcc $((4 * MiB)) $((acked * 4096))" ||
    fail "acknowledged clone writes lost: $(cat "$tmp/qio.out")"
qemu_io "$url2" "read -P 0x72 $((2 * MiB)) 1M" || fail "vm2 lost its earlier write"
tgt_lun_delete 1 1 || fail "cannot delete LUN 1"

# ---- 5. remove in arbitrary order ------------------------------------------------------
order=$(printf "vm1\nvm2\nvm3\n" | shuf | tr "\n" " ")
note "removal order: $order"
for c in $order; do
    out=$(vdlvm vol remove pool0/$c 2>&1) || fail "vol remove $c: $out"
    out=$(vdlvm pool check pool0 2>&1) || fail "pool check after removing $c: $out"
done
alloc=$(vol_field pool0/gold allocated)
[ "$alloc" = $((16 * MiB)) ] || fail "after removing the clones allocated $alloc, want 16 MiB"
vdlvm vol remove pool0/gold > /dev/null || fail "vol remove gold failed"
echo "$test_name: PASS" >&2
