#!/bin/bash
# Live administration: while tgtd exports vol0 and it is under I/O, `vdlvm`
# goes through the module's control socket: a new volume is usable by
# tgtadm at once, a live volume grows, status answers; vol0's data is intact.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires qemu-img --version
requires sh -c 'qemu-img --help | grep -qw iscsi'
requires command -v iscsi-readcapacity16

MiB=$((1024 * 1024))
conf=$(make_pool_conf pool0 3 64MiB 4MiB)
vdlvm pool create "$conf" || fail "pool create failed"
vdlvm vol create pool0/vol0 --size 64MiB || fail "vol create vol0 failed"

start_tgtd
tgt_target_new 1 pool0 || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"
url0=$(iscsi_url 1 1)
wait_for 10 test -S "$VDLVM_RUNDIR/pool0.sock" ||
    fail "no control socket $VDLVM_RUNDIR/pool0.sock while tgtd holds pool0"

# Commands must reach the module: no definition on disk for vdlvm to open
# the pool itself (and tgtd holds its lock anyway).
mv "$conf" "$tmp/pool0.yaml.hidden"
conf=$tmp/pool0.yaml.hidden

# Background I/O on vol0: the same 64 MiB written over and over (bounded).
random_file "$tmp/in0" 64
(
    for i in $(seq 1 200); do
        [ -e "$tmp/stop-io" ] && exit 0
        timeout 120 qemu-img convert -n -f raw -O raw "$tmp/in0" "$url0" ||
            { echo "write $i failed" > "$tmp/io-error"; exit 1; }
        touch "$tmp/io-done-$i"
    done
) &
io_pid=$!
cleanup_fn kill_quiet "$io_pid"
wait_for 60 test -e "$tmp/io-done-1" || fail "background I/O on vol0 did not get going"

# Create vol1 through the control socket and export it at once.
vdlvm vol create pool0/vol1 --size 32MiB || fail "live vol create failed"
tgt_lun_new 1 2 vdlvm pool0/vol1 "conf=$conf" || fail "cannot export the new pool0/vol1"
url1=$(iscsi_url 1 2)
[ "$(iscsi_size "$url1")" = $((32 * MiB)) ] || fail "vol1 LUN has the wrong size"
random_file "$tmp/in1" 32
iscsi_write "$tmp/in1" "$url1" || fail "write to vol1 failed"
iscsi_read "$url1" "$tmp/out1" $((32 * MiB)) || fail "read from vol1 failed"
cmp "$tmp/in1" "$tmp/out1" || fail "vol1 data differs"
note "vol1 created, exported and verified while vol0 is under I/O"

# Extend vol0 while it is exported and written to.
vdlvm vol extend pool0/vol0 --size 96MiB || fail "live vol extend failed"
wait_for 10 sh -c "[ \"\$(iscsi-readcapacity16 -s '$url0')\" = $((96 * MiB)) ]" ||
    fail "vol0 LUN size is $(iscsi_size "$url0"), expected $((96 * MiB)) after extend"
note "vol0 extended to 96 MiB live"

# Status and list answer through the socket.
vdlvm status pool0 > "$tmp/status.txt" || fail "status failed"
grep -qw vol0 "$tmp/status.txt" && grep -qw vol1 "$tmp/status.txt" ||
    fail "status does not show vol0 and vol1: $(cat "$tmp/status.txt")"
vdlvm status pool0 --json > "$tmp/status.json" || fail "status --json failed"
grep -q '"vol1"' "$tmp/status.json" || fail "status --json does not show vol1"
vdlvm vol list pool0 > "$tmp/list.txt" || fail "vol list failed"
grep -qw vol1 "$tmp/list.txt" || fail "vol list does not show vol1"

# Removing an exported volume is refused; an unexported one goes.
expect_fail 4 "vol1.*in use" vdlvm vol remove pool0/vol1
vdlvm vol create pool0/vol2 --size 8MiB || fail "live vol create vol2 failed"
vdlvm vol remove pool0/vol2 || fail "live vol remove of unexported vol2 failed"
vdlvm vol list pool0 > "$tmp/list2.txt" || fail "vol list failed"
! grep -qw vol2 "$tmp/list2.txt" || fail "vol2 still listed after remove"

# Stop the background I/O; it must not have failed.
touch "$tmp/stop-io"
rc=0
wait "$io_pid" || rc=$?
[ ! -e "$tmp/io-error" ] || fail "background I/O on vol0: $(cat "$tmp/io-error")"
[ "$rc" = 0 ] || fail "background I/O exited $rc"

# vol0 holds the background data in its first 64 MiB; the new 32 MiB work.
iscsi_read "$url0" "$tmp/out0" $((64 * MiB)) || fail "read from vol0 failed"
cmp "$tmp/in0" "$tmp/out0" || fail "vol0 data differs after live changes"
random_file "$tmp/in0b" 96
iscsi_write "$tmp/in0b" "$url0" || fail "write of 96 MiB to extended vol0 failed"
iscsi_read "$url0" "$tmp/out0b" $((96 * MiB)) || fail "read of extended vol0 failed"
cmp "$tmp/in0b" "$tmp/out0b" || fail "extended vol0 data differs"

# After tgtd is gone, the changes made through it are in the metadata.
stop_tgtd
vdlvm -c "$conf" vol list pool0 > "$tmp/list3.txt" || fail "vol list after stop failed"
grep -qw vol1 "$tmp/list3.txt" || fail "vol1 lost after tgtd stopped"
vdlvm -c "$conf" status pool0/vol0 --json > "$tmp/vol0.json" || fail "status vol0 failed"
grep -q "\"size\":$((96 * MiB))," "$tmp/vol0.json" ||
    fail "vol0 size in metadata is not 96 MiB: $(cat "$tmp/vol0.json")"
note "ok"
