#!/bin/bash
# vol import / vol export of disk images (issue 11), with a real tgtd:
#   1. a raw image (data, an explicitly written all-zero range, holes) and
#      a qcow2 image (format detected) imported with no tgtd: allocated
#      bytes = the non-zero data (status --json), exclusive = allocated;
#   2. a snapshot of the qcow2 volume; exported as a LUN, a write changes
#      the volume: status shows the shared and exclusive bytes;
#   3. through the tgtd's control socket: the snapshot exported to qcow2
#      and to raw equals the original image (qemu-img compare), the volume
#      exported equals the image plus the write; a third image imported;
#   4. the imported raw volume as a LUN: its content read with qemu-img
#      over iscsi:// has the image's checksum;
#   5. bad input: missing file, volume exists, unknown or wrong format, a
#      --size below the image, an existing FILE without --force, a missing
#      snapshot, an image larger than the pool (fails mid-copy): a message,
#      the exit status, and nothing created (pool check clean);
#   6. kill -9 mid-import (held after its first 4 MiB by the test hook
#      VDLVM_TEST_IMPORT_HOLD), once of the tgtd running it and once of a
#      vdlvm running it alone: the next pool open removes the half volume
#      (and says so), pool check is clean, a re-run imports it whole.
#      While it is held in the tgtd, the half volume is refused to every
#      other command (export, clone, snap create, a LUN, remove, a second
#      import of the name, the reserved mark named by a user): nothing
#      sees or copies a half image.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/thin-common.sh"
thin_requires

conf=$(thin_pool_conf pool0 2 160MiB)
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
img=$tmp/img
mkdir -p "$img"
# the import test hook (admin/image.c), inert until $hd/hold exists; in
# the environment before any tgtd starts, so that tgtd's imports see it
hd=$tmp/hold
mkdir -p "$hd"
export VDLVM_TEST_IMPORT_HOLD=$hd

# ---- 1. import raw and qcow2 ------------------------------------------------
qemu-img create -q -f raw "$img/a.raw" 64M
qemu-io -f raw -c "write -P 0xaa 0 4M" -c "write -P 0x55 20M 1M" \
    -c "write -P 0 30M 4M" -c "write -P 0x17 63M 64k" "$img/a.raw" > /dev/null ||
    fail "cannot write a.raw"
# a relative FILE: made absolute by vdlvm
out=$(cd "$img" && vdlvm vol import pool0/raw a.raw 2>&1) || fail "import raw: $out"
note "$out"
size=$(vol_field pool0/raw provisioned)
[ "$size" = $((64 * MiB)) ] || fail "raw volume: size $size, want 64 MiB"
alloc=$(vol_field pool0/raw allocated)
[ "$alloc" = $((5 * MiB + 64 * 1024)) ] ||
    fail "raw volume: allocated $alloc, want 5 MiB + 64 KiB (the non-zero data)"
[ "$(vol_field pool0/raw exclusive)" = "$alloc" ] || fail "raw volume: exclusive != allocated"
[ "$(vol_field pool0/raw shared)" = 0 ] || fail "raw volume: shared != 0"

qemu-img create -q -f qcow2 "$img/b.qcow2" 100M
qemu-io -f qcow2 -c "write -P 0x11 1M 3M" -c "write -P 0x22 50M 64k" \
    -c "write -P 0 60M 1M" "$img/b.qcow2" > /dev/null || fail "cannot write b.qcow2"
out=$(vdlvm vol import pool0/q "$img/b.qcow2" 2>&1) || fail "import qcow2: $out"
note "$out"
grep -q qcow2 <<<"$out" || fail "import did not detect qcow2: $out"
[ "$(vol_field pool0/q provisioned)" = $((100 * MiB)) ] || fail "qcow2 volume: not 100 MiB"
alloc=$(vol_field pool0/q allocated)
[ "$alloc" = $((3 * MiB + 64 * 1024)) ] ||
    fail "qcow2 volume: allocated $alloc, want 3 MiB + 64 KiB"
ls -A "$img" | grep -q vdlvm && fail "a temporary file was left in $img: $(ls -A "$img")"
out=$(vdlvm pool check pool0 2>&1) || fail "pool check after the imports: $out"

# ---- 2. snapshot, a write through iSCSI ---------------------------------------
vdlvm snap create pool0/q@s1 > /dev/null || fail "snap create failed"
start_tgtd
tgt_target_new 1 image || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/q "conf=$conf" || fail "cannot export pool0/q"
tgt_lun_new 1 2 vdlvm pool0/raw "conf=$conf" || fail "cannot export pool0/raw"
url_q=$(iscsi_url 1 1)
url_raw=$(iscsi_url 1 2)
qemu_io "$url_q" "write -P 0x33 1M 64k" || fail "write to pool0/q: $(cat "$tmp/qio.out")"
ex=$(vol_field pool0/q exclusive)
sh=$(vol_field pool0/q shared)
[ "$ex" = $((64 * 1024)) ] && [ "$sh" = $((3 * MiB)) ] ||
    fail "after the write: exclusive $ex shared $sh, want 64 KiB and 3 MiB"
vdlvm status pool0 | grep -E "EXCLUSIVE|^  q " >&2

# ---- 3. export through the tgtd ------------------------------------------------
vdlvm vol export pool0/q@s1 "$img/s1.qcow2" --format qcow2 > "$tmp/out" 2>&1 ||
    fail "export of the snapshot to qcow2: $(cat "$tmp/out")"
note "$(cat "$tmp/out")"
[ "$(qemu-img info --output=json "$img/s1.qcow2" | grep -o '"format": "[a-z0-9]*"')" = '"format": "qcow2"' ] ||
    fail "s1.qcow2 is not a qcow2 image"
qemu-img compare -q "$img/b.qcow2" "$img/s1.qcow2" || fail "the snapshot exported to qcow2 differs from b.qcow2"
out=$(vdlvm vol export pool0/q@s1 "$img/s1.raw" 2>&1) || fail "export of the snapshot to raw: $out"
qemu-img compare -q -f qcow2 -F raw "$img/b.qcow2" "$img/s1.raw" || fail "the snapshot exported to raw differs"
du_k=$(du -k "$img/s1.raw" | cut -f1)
[ "$du_k" -le $((4 * 1024 + 512)) ] || fail "s1.raw is not sparse: ${du_k} KiB on disk"
qemu-img convert -f qcow2 -O raw "$img/b.qcow2" "$img/want.raw"
qemu-io -f raw -c "write -P 0x33 1M 64k" "$img/want.raw" > /dev/null
out=$(vdlvm vol export pool0/q "$img/q.raw" 2>&1) || fail "export of the volume: $out"
qemu-img compare -q -f raw -F raw "$img/want.raw" "$img/q.raw" || fail "the exported volume differs"
# import through the tgtd too
out=$(vdlvm vol import pool0/q2 "$img/s1.qcow2" --format qcow2 2>&1) || fail "import through tgtd: $out"
vdlvm vol export pool0/q2 "$img/q2.raw" > /dev/null 2>&1 || fail "export of pool0/q2"
qemu-img compare -q -f qcow2 -F raw "$img/b.qcow2" "$img/q2.raw" || fail "pool0/q2 differs from b.qcow2"

# ---- 4. the imported raw volume through iSCSI -------------------------------------
iscsi_read "$url_raw" "$tmp/lun.raw" $((64 * MiB)) || fail "cannot read the raw LUN"
[ "$(sha256sum < "$tmp/lun.raw")" = "$(sha256sum < "$img/a.raw")" ] ||
    fail "the raw LUN's checksum differs from a.raw"

# ---- 5. bad input ---------------------------------------------------------------------------
expect_fail 1 "cannot open" vdlvm vol import pool0/x "$img/missing.raw"
expect_fail 1 "already exists" vdlvm vol import pool0/raw "$img/a.raw"
expect_fail 2 "unknown" vdlvm vol import pool0/x "$img/a.raw" --format bogus
expect_fail 1 "not readable as qcow2" vdlvm vol import pool0/x "$img/a.raw" --format qcow2
expect_fail 2 "smaller" vdlvm vol import pool0/x "$img/a.raw" --size 1MiB
expect_fail 2 "missing FILE" vdlvm vol import pool0/x
expect_fail 1 "exists; use --force" vdlvm vol export pool0/q "$img/q.raw"
out=$(vdlvm vol export pool0/q "$img/q.raw" --force 2>&1) || fail "export --force: $out"
expect_fail 1 "not found" vdlvm vol export pool0/q@nope "$img/n.raw"
[ ! -e "$img/n.raw" ] || fail "a failed export left $img/n.raw"
vdlvm status pool0/x > /dev/null 2>&1 && fail "a failed import left pool0/x"
# an image larger than a small pool: fails during the copy, the volume goes
conf1=$(thin_pool_conf pool1 1 24MiB)
vdlvm pool create "$conf1" > /dev/null || fail "pool create pool1 failed"
qemu-img create -q -f raw "$img/big.raw" 64M
qemu-io -f raw -c "write -P 0x99 0 48M" "$img/big.raw" > /dev/null
expect_fail 1 "space|removed again" vdlvm vol import pool1/big "$img/big.raw"
vdlvm status pool1/big > /dev/null 2>&1 && fail "a failed import left pool1/big"
out=$(vdlvm pool check pool1 2>&1) || fail "pool check pool1: $out"
out=$(vdlvm pool check pool0 2>&1) || fail "pool check pool0: $out"

# ---- 6. kill -9 mid-import ----------------------------------------------------------------
qemu-img create -q -f raw "$img/k.raw" 32M
qemu-io -f raw -c "write -P 0x5a 0 6M" -c "write -P 0xa5 16M 6M" "$img/k.raw" > /dev/null ||
    fail "cannot write k.raw"
# $1: tgtd (the tgtd running the import is killed) or vdlvm (no tgtd)
kill_mid_import() {
    local ipid
    rm -f "$hd/held"
    touch "$hd/hold"
    "$VDLVM" vol import pool0/k "$img/k.raw" > "$tmp/kimp.out" 2>&1 &
    ipid=$!
    cleanup_fn kill_quiet "$ipid"
    wait_for 30 test -e "$hd/held" || fail "$1: the import did not reach the hold: $(cat "$tmp/kimp.out")"
    if [ "$1" = tgtd ]; then
        # mid-copy, the half volume is refused to everyone but its importer
        expect_fail 4 "being imported" vdlvm vol export pool0/k "$img/half.raw"
        [ ! -e "$img/half.raw" ] || fail "an export of the half volume left $img/half.raw"
        expect_fail 4 "being imported" vdlvm vol clone pool0/k pool0/kc
        expect_fail 4 "being imported" vdlvm snap create pool0/k@s
        expect_fail 4 "being imported" vdlvm vol remove pool0/k
        expect_fail 4 "being imported" vdlvm vol import pool0/k "$img/k.raw"
        expect_fail nz "reserved" vdlvm vol clone pool0/k@.vdlvm-import pool0/kc
        expect_fail nz "reserved" vdlvm snap remove pool0/k@.vdlvm-import
        tgt_lun_new 1 9 vdlvm pool0/k "conf=$conf" > /dev/null 2>&1 &&
            fail "the half volume was exported as a LUN"
        vdlvm status pool0/kc > /dev/null 2>&1 && fail "a clone of the half volume exists"
        vdlvm snap list pool0/k 2>&1 | grep -q vdlvm-import && fail "snap list shows the import mark"
        kill -KILL "$tgtd_pid" 2>/dev/null || true
        wait "$tgtd_pid" 2>/dev/null || true
        rm -f "/var/run/tgtd/socket.$tgtd_ctl" "/var/run/tgtd/socket.$tgtd_ctl.lock"
        _forget_tgtd "$tgtd_pid"
    else
        kill -KILL "$ipid"
    fi
    wait "$ipid" 2>/dev/null && fail "$1: the killed import exited 0"
    rm -f "$hd/hold"
    # the next open (this vdlvm: no tgtd holds the pool) removes it
    vdlvm status pool0/k > "$tmp/kst.out" 2>&1 && fail "$1: pool0/k survived its killed import"
    grep -q "import was interrupted; removed" "$tmp/kst.out" ||
        fail "$1: no removal message at the next open: $(cat "$tmp/kst.out")"
    out=$(vdlvm pool check pool0 2>&1) || fail "$1: pool check after the killed import: $out"
    out=$(vdlvm vol import pool0/k "$img/k.raw" 2>&1) || fail "$1: re-run of the import: $out"
    vdlvm vol export pool0/k "$img/k.out" --force > /dev/null 2>&1 || fail "$1: export of pool0/k"
    cmp -s "$img/k.raw" "$img/k.out" || fail "$1: the re-imported pool0/k differs from k.raw"
    [ "$(vol_field pool0/k allocated)" = $((12 * MiB)) ] || fail "$1: pool0/k: allocated != 12 MiB"
    out=$(vdlvm vol remove pool0/k 2>&1) || fail "$1: vol remove pool0/k: $out"
    note "$1 killed mid-import: removed at the next open, re-run ok"
}
kill_mid_import tgtd
kill_mid_import vdlvm
# a reserved snapshot name is refused
expect_fail 2 "reserved" vdlvm snap create pool0/q@.vdlvm-import
out=$(vdlvm pool check pool0 2>&1) || fail "pool check pool0 at the end: $out"
ls -A "$img" | grep -q vdlvm && fail "a temporary file was left in $img: $(ls -A "$img")"
note "ok"
