#!/bin/bash
# Snapshots of a thin volume through iSCSI (issue 11), with a real tgtd:
#   1. pattern A written through iSCSI; `vdlvm snap create` (through the
#      tgtd's control socket) while a write load runs on another range;
#      then pattern B over A;
#   2. the snapshot exported as a second LUN reads A back and every load
#      write acknowledged before the command; the volume reads B and the
#      whole load; a write to the
#      snapshot LUN is refused (DATA PROTECT) and changed nothing;
#   3. `snap remove` is refused while the snapshot LUN exists; after the LUN
#      is deleted it frees exactly the chunks only the snapshot held
#      (status allocated bytes), and `pool check` is clean throughout;
#   4. `vol revert` is refused while the volume is exported;
#   5. kill -9 of tgtd during `snap create` and `snap remove` under a write
#      load: the operation happened or not, B reads back (and the
#      snapshot, if it exists), `pool check` is clean.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/thin-common.sh"
thin_requires

conf=$(thin_pool_conf pool0 2 100MiB)
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
out=$(vdlvm vol create pool0/v --size 1GiB --thin 2>&1) || thin_create_failed "$out"

start_tgtd
tgt_target_new 1 snap || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/v "conf=$conf" || fail "cannot export pool0/v"
url=$(iscsi_url 1 1)

# ---- 1. A, snapshot under load, B ----------------------------------------------
qemu_io "$url" "write -P 0xaa 0 8M" || fail "write A: $(cat "$tmp/qio.out")"
alloc_a=$(vol_field pool0/v allocated)
[ "$alloc_a" = $((8 * MiB)) ] || fail "after A: allocated $alloc_a, want 8 MiB"
# the load: 4096 writes of 4 KiB of 0xcc over [32M, 48M), one qemu-io run
load=()
for (( i = 0; i < 4096; i++ )); do
    load+=(-c "write -P 0xcc $((32 * MiB + i * 4096)) 4k")
done
( rc=0; timeout 120 qemu-io -f raw "${load[@]}" "$url" > "$tmp/load.out" 2>&1 || rc=$?
  echo "$rc" > "$tmp/load.rc" ) &
load_pid=$!
cleanup_fn kill_quiet "$load_pid"
wait_for 20 grep -q wrote "$tmp/load.out" || fail "the write load did not start"
# writes qemu-io reported done (acknowledged) before the command started
n0=$(grep -c wrote "$tmp/load.out" || true)
out=$(vdlvm snap create pool0/v@s1 2>&1) || fail "snap create under load failed: $out"
note "$out (under load)"
grep -c wrote "$tmp/load.out" > "$tmp/at-snap" || true
wait "$load_pid" || true
[ "$(cat "$tmp/load.rc")" = 0 ] && ! grep -Eq "failed|error" "$tmp/load.out" ||
    fail "the write load failed: $(tail -n 3 "$tmp/load.out")"
note "load: $(grep -c wrote "$tmp/load.out") writes, snapshot taken after write $(cat "$tmp/at-snap")"
qemu_io "$url" "write -P 0xbb 0 8M" || fail "write B: $(cat "$tmp/qio.out")"
vdlvm snap list pool0/v >&2
vdlvm snap list pool0/v --json | grep -q '"name":"s1"' || fail "snap list --json has no s1"
out=$(vdlvm pool check pool0 2>&1) || fail "pool check after the snapshot: $out"

# ---- 2. the snapshot as a LUN --------------------------------------------------------
tgt_lun_new 1 2 vdlvm pool0/v@s1 "conf=$conf" || fail "cannot export pool0/v@s1"
url_s=$(iscsi_url 1 2)
[ "$(iscsi_size "$url_s")" = $((1024 * MiB)) ] || fail "the snapshot LUN is not 1 GiB"
qemu_io "$url_s" "read -P 0xaa 0 8M" || fail "snapshot does not read A: $(cat "$tmp/qio.out")"
qemu_io "$url" "read -P 0xbb 0 8M" || fail "volume does not read B: $(cat "$tmp/qio.out")"
qemu_io "$url" "read -P 0xcc 32M 16M" || fail "the load's data is not on the volume: $(cat "$tmp/qio.out")"
# the snapshot holds every load write acknowledged before snap create
[ "$n0" -gt 0 ] || fail "no load write was acknowledged before the snapshot"
qemu_io "$url_s" "read -P 0xcc 32M $((n0 * 4096))" ||
    fail "the snapshot lacks load writes acknowledged before it: $(cat "$tmp/qio.out")"
if timeout 60 qemu-io -f raw -c "write -P 0xdd 0 64k" "$url_s" > "$tmp/ro.out" 2>&1 &&
    ! grep -Eqi "failed|error" "$tmp/ro.out"; then
    fail "a write to the snapshot LUN succeeded"
fi
note "write to the snapshot LUN: $(head -n 1 "$tmp/ro.out")"
qemu_io "$url_s" "read -P 0xaa 0 8M" || fail "the refused write changed the snapshot"

# ---- 3. remove ------------------------------------------------------------------------------
expect_fail 4 "in use|exported" vdlvm snap remove pool0/v@s1
tgt_lun_delete 1 2 || fail "cannot delete the snapshot LUN"
before=$(vol_field pool0/v allocated)
excl=$(vdlvm snap list pool0/v --json | _json_num exclusive)
out=$(vdlvm snap remove pool0/v@s1 2>&1) || fail "snap remove failed: $out"
after=$(vol_field pool0/v allocated)
note "allocated before $before, after $after, snapshot exclusive $excl"
# A (8 MiB) was held by the snapshot alone after B overwrote it; the load
# wrote chunks that were either new after the snapshot or copied
[ $((before - after)) -ge $((8 * MiB)) ] || fail "snap remove freed $((before - after)) bytes, want >= 8 MiB"
[ $((before - after)) = "$excl" ] || fail "snap remove freed $((before - after)), snap list said $excl"
out=$(vdlvm pool check pool0 2>&1) || fail "pool check after snap remove: $out"
qemu_io "$url" "read -P 0xbb 0 8M" || fail "volume lost B after snap remove"

# ---- 4. revert is refused while exported -----------------------------------------------------
vdlvm snap create pool0/v@s2 > /dev/null || fail "snap create s2 failed"
expect_fail 4 "exported.*--force" vdlvm vol revert pool0/v@s2
qemu_io "$url" "read -P 0xbb 0 8M" || fail "a refused revert changed the volume"
vdlvm snap remove pool0/v@s2 > /dev/null || fail "snap remove s2 failed"

# ---- 5. kill -9 of tgtd during snap create / remove under a write load -------------------------
# Afterwards the operation happened or did not, the data acknowledged
# before reads back, and pool check is clean (what the crash left
# unreferenced is reclaimed by the open).
for op in create remove; do
    [ "$op" = remove ] && { vdlvm snap create pool0/v@k > /dev/null || fail "snap create k failed"; }
    ( rc=0; timeout 60 qemu-io -f raw "${load[@]}" "$url" > "$tmp/load2.out" 2>&1 || rc=$?; echo "$rc" > "$tmp/load2.rc" ) &
    load_pid=$!
    cleanup_fn kill_quiet "$load_pid"
    wait_for 20 grep -q wrote "$tmp/load2.out" || fail "the second load did not start"
    ( vdlvm snap "$op" pool0/v@k > "$tmp/kop.out" 2>&1 || true ) &
    op_pid=$!
    sleep 0.0$((RANDOM % 9 + 1))
    kill -KILL "$tgtd_pid" 2>/dev/null || true
    wait "$tgtd_pid" 2>/dev/null || true
    rm -f "/var/run/tgtd/socket.$tgtd_ctl" "/var/run/tgtd/socket.$tgtd_ctl.lock"
    _forget_tgtd "$tgtd_pid"
    wait "$op_pid" || true
    kill_quiet "$load_pid"
    wait "$load_pid" 2>/dev/null || true
    has=$(vdlvm snap list pool0/v --json | grep -c '"name":"k"' || true)
    note "kill -9 during snap $op ($(tr '\n' ' ' < "$tmp/kop.out")): snapshot k now exists: $has"
    out=$(vdlvm pool check pool0 2>&1) || fail "pool check after kill -9 during snap $op: $out"
    note "$out"
    start_tgtd
    tgt_target_new 1 snap || fail "cannot create target again"
    tgt_lun_new 1 1 vdlvm pool0/v "conf=$conf" || fail "cannot export pool0/v again"
    url=$(iscsi_url 1 1)
    qemu_io "$url" "read -P 0xbb 0 8M" || fail "B lost after kill -9 during snap $op: $(cat "$tmp/qio.out")"
    if [ "$has" = 1 ]; then
        tgt_lun_new 1 2 vdlvm pool0/v@k "conf=$conf" || fail "cannot export pool0/v@k"
        qemu_io "$(iscsi_url 1 2)" "read -P 0xbb 0 8M" || fail "snapshot k does not read B"
        tgt_lun_delete 1 2 || fail "cannot delete LUN 2"
        [ "$op" = create ] && { vdlvm snap remove pool0/v@k > /dev/null || fail "snap remove k failed"; }
    fi
done
out=$(vdlvm snap list pool0/v --json)
grep -q '"name":"k"' <<<"$out" && { vdlvm snap remove pool0/v@k > /dev/null || fail "snap remove k failed"; }
out=$(vdlvm pool check pool0 2>&1) || fail "final pool check: $out"
echo "$test_name: PASS" >&2
