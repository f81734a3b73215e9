#!/bin/bash
# A volume larger than any single device (a pool of three sparse files),
# exported by tgtd with bs_vdlvm.so: data written through iSCSI reads back
# identical, also after tgtd is restarted.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires qemu-img --version
requires sh -c 'qemu-img --help | grep -qw iscsi'
requires command -v iscsi-readcapacity16

MiB=$((1024 * 1024))
vol_mib=160          # > 2 x 64 MiB: must take extents from all three devices

conf=$(make_pool_conf pool0 3 64MiB 4MiB)
vdlvm pool create "$conf" || fail "pool create failed"
for i in 0 1 2; do
    f=$tmp/pool0-d$i.img
    [ -f "$f" ] || fail "pool create did not create $f"
    [ "$(stat -c %s "$f")" = $((64 * MiB)) ] || fail "$f is not 64 MiB"
    # Sparse: far fewer blocks allocated than its size.
    [ $(( $(stat -c '%b * %B' "$f") )) -lt $((32 * MiB)) ] || fail "$f is not sparse"
done
vdlvm vol create pool0/vol0 --size ${vol_mib}MiB || fail "vol create failed"
vdlvm status pool0/vol0 >&2 || fail "status failed"
vdlvm status pool0/vol0 --json > "$tmp/status.json" || fail "status --json failed"
for i in 0 1 2; do
    grep -q "\"device\":\"d$i\"" "$tmp/status.json" || fail "vol0 has no extents on d$i: $(cat "$tmp/status.json")"
done

export_vol0() {
    tgt_target_new 1 vol0 || fail "cannot create target"
    tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"
    url=$(iscsi_url 1 1)
}

start_tgtd
export_vol0
size=$(iscsi_size "$url") || fail "READ CAPACITY failed on $url"
[ "$size" = $((vol_mib * MiB)) ] || fail "LUN size $size, expected $((vol_mib * MiB))"

# The whole volume, so that every device is written.
random_file "$tmp/in" "$vol_mib"
iscsi_write "$tmp/in" "$url" || fail "qemu-img write to $url failed"
iscsi_read "$url" "$tmp/out" $((vol_mib * MiB)) || fail "qemu-img read from $url failed"
cmp "$tmp/in" "$tmp/out" || fail "data read back differs from data written"
note "160 MiB written and read back identical"

# The data landed on all three devices.
for i in 0 1 2; do
    used=$(( $(stat -c '%b * %B' "$tmp/pool0-d$i.img") ))
    [ "$used" -gt $((16 * MiB)) ] || fail "d$i holds only $used bytes after a full write"
done

# Restart tgtd: the data is still there (pool reopened from its metadata).
rm -f "$tmp/out"
restart_tgtd
export_vol0
iscsi_read "$url" "$tmp/out" $((vol_mib * MiB)) || fail "qemu-img read after restart failed"
cmp "$tmp/in" "$tmp/out" || fail "data differs after tgtd restart"
note "identical after tgtd restart"

# With tgtd gone, vdlvm opens the pool itself and still sees the volume.
stop_tgtd
vdlvm status pool0 > "$tmp/status2.txt" || fail "status after stopping tgtd failed"
grep -qw vol0 "$tmp/status2.txt" || fail "vol0 missing from status after restart"
note "ok"
