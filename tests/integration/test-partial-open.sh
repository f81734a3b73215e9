#!/bin/bash
# A pool with two metadata copies, one of its devices gone: neither vdlvm
# nor tgtd opens it without a majority of the copies (another host might
# have changed it on the copy this one cannot see); `vdlvm --partial` and
# the module's bsopts "partial" do, and the volume's extents on the device
# that is left are served.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v iscsi-readcapacity16
requires qemu-io --version

conf=$(make_pool_conf pool0 2 64MiB 4MiB)
vdlvm pool create "$conf" >/dev/null || fail "pool create failed"
vdlvm -c "$conf" vol create pool0/vol0 --size 8MiB >/dev/null || fail "vol create failed"
# The volume's extents: on which device?
vdlvm -c "$conf" status pool0/vol0 --json > "$tmp/st.json" || fail "status failed"
if grep -q '"device":"d0"' "$tmp/st.json"; then gone=d1; else gone=d0; fi
note "volume on the device that stays; $gone goes away"
mv "$tmp/pool0-$gone.img" "$tmp/pool0-$gone.away"

expect_fail 1 "not a majority.*--partial" vdlvm -c "$conf" status pool0
vdlvm -c "$conf" --partial status pool0 > "$tmp/partial.out" 2>&1 ||
    fail "status --partial failed: $(cat "$tmp/partial.out")"

start_tgtd
tgt_target_new 1 vol0 || fail "cannot create target"
if tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" 2>/dev/null; then
    fail "tgtd exported a pool with 1 of 2 metadata copies without partial"
fi
tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf;partial" ||
    fail "tgtd refused the pool with bsopts partial"
url=$(iscsi_url 1 1)
out=$(qemu-io -f raw -c "write -P 0x5a 0 64k" -c "read -P 0x5a 0 64k" "$url" 2>&1) ||
    fail "I/O on the partially opened pool failed: $out"
grep -q "read 65536/65536" <<<"$out" || fail "read back failed: $out"
note "ok"
