#!/bin/bash
# Issue 14: tgtd's asynchronous path (vd_vol_submit from the main thread,
# completions through the pool's async eventfd).  A linear volume over
# three local files, bigger than any of them (pieces split at extent
# boundaries on every device), exported with the inline page-cache path
# off (VDLVM_INLINE=0) so that every READ/WRITE goes through the async
# path: data written through iSCSI reads back identical, a SYNCHRONIZE
# CACHE succeeds, tgtd logs that the path is on.  Buffered local files
# take the async path only with VDLVM_ASYNC=all (io_uring is slower than
# the workers on them), so that run sets it; then the default (local
# files keep the workers: the log line is absent) and VDLVM_ASYNC=0 read
# the first run's data.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires qemu-img --version
requires qemu-io --version
requires sh -c 'qemu-img --help | grep -qw iscsi'

MiB=$((1024 * 1024))
vol_mib=96 # > 64 MiB: extents on at least two devices

conf=$(make_pool_conf pool0 3 48MiB 4MiB)
vdlvm pool create "$conf" || fail "pool create failed"
vdlvm vol create pool0/vol0 --size ${vol_mib}MiB || fail "vol create failed"

export_vol0() {
    tgt_target_new 1 vol0 || fail "cannot create target"
    tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"
    url=$(iscsi_url 1 1)
}
tgtd_log() { cat "$tmp"/tgtd-*.log 2>/dev/null || true; }

export VDLVM_INLINE=0
export VDLVM_ASYNC=all
start_tgtd
export_vol0
random_file "$tmp/in" "$vol_mib"
iscsi_write "$tmp/in" "$url" || fail "qemu-img write to $url failed"
timeout 60 qemu-io -f raw -c flush "$url" >/dev/null || fail "SYNCHRONIZE CACHE failed"
# 4 KiB writes at unaligned-to-extent offsets around a boundary (qemu-io
# sends one WRITE per command), then read back
timeout 60 qemu-io -f raw -c "write -P 0x5a $((4 * MiB - 8192)) 16k" "$url" >/dev/null ||
    fail "qemu-io write across an extent boundary failed"
printf '\x5a%.0s' $(seq 1 16384) | dd of="$tmp/in" bs=1 seek=$((4 * MiB - 8192)) conv=notrunc status=none
iscsi_read "$url" "$tmp/out" $((vol_mib * MiB)) || fail "qemu-img read from $url failed"
cmp "$tmp/in" "$tmp/out" || fail "data read back differs from data written (async path)"
grep -q "asynchronous I/O: commands start on the main thread" <(tgtd_log) ||
    fail "tgtd did not use the asynchronous path: $(tgtd_log | tail -n 20)"
note "async path: ${vol_mib} MiB written, flushed and read back identical"

stop_tgtd
rm -f "$tmp"/tgtd-*.log "$tmp/out"
unset VDLVM_ASYNC
start_tgtd
export_vol0
iscsi_read "$url" "$tmp/out" $((vol_mib * MiB)) || fail "qemu-img read (default) failed"
cmp "$tmp/in" "$tmp/out" || fail "data differs when read with the default settings"
grep -q "asynchronous I/O: commands start" <(tgtd_log) &&
    fail "buffered local files took the asynchronous path by default"
note "default: buffered local files use the workers, same data; ok"

stop_tgtd
rm -f "$tmp"/tgtd-*.log "$tmp/out"
export VDLVM_ASYNC=0
start_tgtd
export_vol0
iscsi_read "$url" "$tmp/out" $((vol_mib * MiB)) || fail "qemu-img read (workers) failed"
cmp "$tmp/in" "$tmp/out" || fail "data differs when read by the workers"
grep -q "asynchronous I/O: commands start" <(tgtd_log) &&
    fail "VDLVM_ASYNC=0 did not turn the asynchronous path off"
note "VDLVM_ASYNC=0: the workers read the same data; ok"
