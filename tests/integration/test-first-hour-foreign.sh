#!/bin/bash
# `vdlvm pool create` never overwrites data it does not own: a device with a
# file system (ext4 made by mkfs), or with random bytes in its first MiB, is
# refused with a message naming what was found and where it is defined
# (FILE:LINE), the device is left byte for byte as it was (blkid still finds
# the ext4 file system) and nothing else is created; with --force the pool
# is created and the message says what is overwritten.  A device freed by
# `vdlvm pool remove` is accepted again without --force.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_vdlvm
requires command -v mkfs.ext4
requires command -v blkid

defs=$tmp/defs   # outside VDLVM_CONFDIR: remembered by pool create
mkdir "$defs"

# ---- ext4 ----------------------------------------------------------------------
truncate -s 64M "$tmp/fs.img"
mkfs.ext4 -q -F -L first-hour "$tmp/fs.img" || fail "mkfs.ext4 failed"
sum_fs=$(sha256sum < "$tmp/fs.img")
cat > "$defs/fsp.yaml" <<EOF
pool: fsp
devices:
  - name: n0
    path: $tmp/fsp-new.img
    size: 64MiB
  - name: x0
    path: $tmp/fs.img
EOF
expect_fail 1 "fsp\.yaml:[0-9]+:[0-9]+: device 'x0' \(.*fs\.img\) holds an ext4 file system \(UUID .*label first-hour\); refusing" \
    vdlvm pool create "$defs/fsp.yaml"
[ "$(sha256sum < "$tmp/fs.img")" = "$sum_fs" ] || fail "the refused ext4 device was changed"
blkid -p "$tmp/fs.img" | grep -q 'TYPE="ext4"' || fail "blkid no longer finds ext4 after the refusal"
[ ! -e "$tmp/fsp-new.img" ] || fail "a refused pool create left fsp-new.img behind"
[ ! -e "$VDLVM_STATEDIR/pools/fsp" ] || fail "a refused pool create was remembered"

out=$(vdlvm pool create --force "$defs/fsp.yaml" 2>&1) || fail "pool create --force failed: $out"
note "--force: $out"
grep -q "warning: device 'x0' .*overwriting an ext4 file system" <<<"$out" ||
    fail "pool create --force does not say it overwrites the ext4 file system: $out"
vdlvm status fsp > /dev/null || fail "status fsp (remembered definition) failed"

# ---- random data ---------------------------------------------------------------------
head -c $((1024 * 1024)) /dev/urandom > "$tmp/rnd.img"
truncate -s 64M "$tmp/rnd.img"
sum_rnd=$(sha256sum < "$tmp/rnd.img")
cat > "$defs/rndp.yaml" <<EOF
pool: rndp
devices:
  - name: r0
    path: $tmp/rnd.img
EOF
expect_fail 1 "rndp\.yaml:[0-9]+:[0-9]+: device 'r0' .*holds non-zero data \(at byte [0-9]+ of the first 1MiB" \
    vdlvm pool create "$defs/rndp.yaml"
[ "$(sha256sum < "$tmp/rnd.img")" = "$sum_rnd" ] || fail "the refused random-data device was changed"
# Non-zero data only at the end of the first MiB is found too.
truncate -s 64M "$tmp/rnd2.img"
printf 'x' | dd of="$tmp/rnd2.img" bs=1 seek=$((1024 * 1024 - 1)) conv=notrunc status=none
sed "s|$tmp/rnd.img|$tmp/rnd2.img|" "$defs/rndp.yaml" > "$defs/rndp2.yaml"
expect_fail 1 "device 'r0' .*holds non-zero data \(at byte 1048575 " vdlvm pool create "$defs/rndp2.yaml"
out=$(vdlvm pool create --force "$defs/rndp.yaml" 2>&1) || fail "pool create --force failed: $out"
grep -q "overwriting non-zero data" <<<"$out" || fail "--force does not say what it overwrites: $out"

# ---- a remote LUN: its first MiB is read through the iSCSI driver ---------------------
if ( requires_tgtd ) >/dev/null 2>&1; then
    start_tgtd --no-module
    truncate -s 64M "$tmp/peer.img"
    mkfs.ext4 -q -F -L on-the-peer "$tmp/peer.img" || fail "mkfs.ext4 on the peer's file failed"
    sum_peer=$(sha256sum < "$tmp/peer.img")
    tgt_target_new 1 peer || fail "cannot create the peer's target"
    tgt_lun_new 1 1 rdwr "$tmp/peer.img" || fail "cannot export the peer's file"
    printf 'pool: remp\ndevices:\n  - name: p0\n    iscsi: %s\n    timeout: 10s\n' \
        "$(iscsi_url 1 1)" > "$defs/remp.yaml"
    expect_fail 1 "remp\.yaml:[0-9]+:[0-9]+: device 'p0' \(iscsi://.*\) holds an ext4 file system \(UUID .*label on-the-peer\)" \
        vdlvm pool create "$defs/remp.yaml"
    [ "$(sha256sum < "$tmp/peer.img")" = "$sum_peer" ] || fail "the refused remote device was changed"
    out=$(vdlvm pool create --force "$defs/remp.yaml" 2>&1) || fail "pool create --force on the remote LUN failed: $out"
    grep -q "overwriting an ext4 file system" <<<"$out" || fail "--force does not say what it overwrites: $out"
    stop_tgtd
fi

# ---- a device freed by pool remove is accepted again ---------------------------------
vdlvm pool remove rndp > "$tmp/rm.out" || fail "pool remove rndp failed"
note "$(cat "$tmp/rm.out")"
vdlvm pool create "$defs/rndp.yaml" > /dev/null ||
    fail "pool create on a device freed by pool remove needs --force"
note "done"
