#!/bin/bash
# Encryption at rest (issue 16): a pool with encryption: {key_file: ...}
# whose remote devices on nodeb and nodec (stock tgtds exporting files, in
# network namespaces) have encrypt: true; a 2-leg mirror, one leg per
# peer, served by nodea's tgtd.  A known 4 KiB pattern written through
# iSCSI reads back equal and appears in neither peer's backing file; after
# a restart of nodea's tgtd it reads back with the key; a wrong key file,
# a missing one and one readable by others refuse the pool with a message
# and change nothing; key rotation (add NEW, definition -> NEW, remove OLD)
# leaves NEW opening the pool and OLD refused.  A 512-byte write inside a
# sector reads back with its neighbours intact (with CRYPT_SECTOR=4096,
# encryption.sector_size 4096, that is a read-modify-write).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
mirror_requires
requires qemu-io --version

mirror_nodes_setup
mirror_peers_start 64M

key1=$tmp/key1 key2=$tmp/key2 key3=$tmp/key3
for k in "$key1" "$key2" "$key3"; do
    (umask 077 && head -c 64 /dev/urandom > "$k")
done

# crypt_conf KEYFILE: the definition ($conf) naming KEYFILE
conf=$tmp/cr.yaml
crypt_conf() {
    cat > "$conf" <<EOF
pool: cr
extent_size: 4MiB
encryption:
  key_file: $1
  sector_size: ${CRYPT_SECTOR:-512}
devices:
  - name: a0
    path: $tmp/nodea-md.img
    size: 16MiB
    node: nodea
    encrypt: true
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: 3000ms
    encrypt: true
  - name: c0
    iscsi: $url_c
    node: nodec
    timeout: 3000ms
    encrypt: true
EOF
}
crypt_conf "$key1"
vdlvm_a pool create "$conf" || fail "pool create failed"
mirror_vol_create cr/vol 16MiB
mirror_tgtd_start cr/vol

# The pattern: 4 KiB of 64 distinct text lines (grep can look for them in
# the binary backing files), 256 times: 1 MiB at volume offset 4 MiB.
pat=$tmp/pattern
for i in $(seq -w 0 63); do
    printf 'vdlvm-crypt-%s-line-%s-%040d\n' "$$" "$i" 0 | cut -c1-63
done > "$tmp/pat4k"
[ "$(stat -c %s "$tmp/pat4k")" = 4096 ] || fail "pattern is not 4 KiB"
for i in $(seq 256); do cat "$tmp/pat4k"; done > "$pat"
marker="vdlvm-crypt-$$-line-17-"

in_a timeout 60 qemu-io -f raw -c "write -s $pat $((4 * MiB)) $MiB" "$url_a" >/dev/null ||
    fail "qemu-io write of the pattern failed"
# 512 bytes of 0x5a at 9 MiB + 512, inside a sector of zeros
in_a timeout 60 qemu-io -f raw -c "write -P 0x5a $((9 * MiB + 512)) 512" "$url_a" >/dev/null ||
    fail "qemu-io write of 512 bytes failed"
head -c 512 /dev/zero > "$tmp/small"
head -c 512 /dev/zero | tr '\0' '\132' >> "$tmp/small"
head -c 3072 /dev/zero >> "$tmp/small"
# read_back: the 1 MiB at 4 MiB equals the pattern, the 4 KiB at 9 MiB
# the small write (through iSCSI)
read_back() {
    rm -f "$tmp/vol.img"
    in_a timeout 60 qemu-img convert -f raw -O raw "$url_a" "$tmp/vol.img" ||
        fail "qemu-img convert of the volume failed"
    cmp -s <(dd if="$tmp/vol.img" bs=1M skip=4 count=1 status=none) "$pat" ||
        fail "$1: the pattern does not read back equal"
    cmp -s <(dd if="$tmp/vol.img" bs=4096 skip=$((9 * 256)) count=1 status=none) "$tmp/small" ||
        fail "$1: the 512-byte write does not read back with zeros around it"
    grep -qaF "$marker" "$tmp/vol.img" || fail "grep does not find the pattern in the plaintext image"
}
read_back "after the write"
note "1 MiB pattern written and read back through $url_a"

# Both legs hold the data (the mirror is in sync) and neither backing
# file holds the plaintext.
wait_in_sync cr/vol 30
out=$(vdlvm_a verify cr/vol) || fail "verify of the encrypted mirror failed: $out"
for f in "$tmp/nodeb-disk.img" "$tmp/nodec-disk.img" "$tmp/nodea-md.img"; do
    ! grep -qaF "vdlvm-crypt-$$-line-" "$f" || fail "$f holds the plaintext pattern"
done
# ...but holds data: the leg's extents are not all zeros
for f in "$tmp/nodeb-disk.img" "$tmp/nodec-disk.img"; do
    nz=$(dd if="$f" bs=1M skip=5 count=59 status=none | tr -d '\0' | wc -c)
    [ "$nz" -gt 0 ] || fail "$f holds no data at all"
done
note "neither peer's backing file holds the pattern; verify: $out"

# Restart nodea's tgtd: the pool reopens with the key file, data reads back.
stop_tgtd "$a_ctl" "$a_pid"
mirror_tgtd_start cr/vol
read_back "after a restart"
note "read back after a restart of nodea's tgtd"

# Key rotation with the pool served: add key2 (authorised by key1 of the
# definition), point the definition at key2, remove key1.
out=$(vdlvm_a key add cr --key-file "$key2" 2>&1) || fail "key add failed: $out"
note "$out"
rc=0
out=$(vdlvm_a key remove cr --key-file "$key3" 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "key remove of a key file that opens no slot succeeded"
crypt_conf "$key2"
out=$(vdlvm_a key remove cr --key-file "$key1" 2>&1) || fail "key remove failed: $out"
note "$out"
rc=0
out=$(vdlvm_a key remove cr --key-file "$key2" 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -q "last key slot" <<<"$out" ||
    fail "key remove of the last slot: exit $rc: $out"
stop_tgtd "$a_ctl" "$a_pid"

md_sum() { head -c $((5 * MiB)) "$tmp/nodea-md.img" | md5sum; }
sum0=$(md_sum)
# refused: the old key file, a wrong one, none, one readable by others
crypt_conf "$key1"
rc=0
out=$(vdlvm_a -c "$conf" status cr 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -q "key1 opens none of the pool's 1 key slots" <<<"$out" ||
    fail "the removed key file: exit $rc: $out"
note "old key file refused: $out"
crypt_conf "$key3"
rc=0
out=$(vdlvm_a -c "$conf" status cr 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -q "opens none" <<<"$out" || fail "a wrong key file: exit $rc: $out"
sed -i '/^encryption:/,/sector_size:/d' "$conf"
rc=0
out=$(vdlvm_a -c "$conf" status cr 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -q "encrypt: true needs the pool's key" <<<"$out" ||
    fail "no key file: exit $rc: $out"
crypt_conf "$key2"
chmod 644 "$key2"
rc=0
out=$(vdlvm_a -c "$conf" status cr 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -q "chmod 600 $key2" <<<"$out" || fail "a 0644 key file: exit $rc: $out"
note "0644 key file refused: $out"
chmod 600 "$key2"
[ "$(md_sum)" = "$sum0" ] || fail "a refused open changed the metadata"

# The new key file opens the pool and the data reads back.
out=$(vdlvm_a -c "$conf" status cr 2>&1) || fail "status with the new key file failed: $out"
mirror_tgtd_start cr/vol
read_back "after key rotation"
note "after rotation the new key file opens the pool, the old one does not"
stop_tgtd "$a_ctl" "$a_pid"
