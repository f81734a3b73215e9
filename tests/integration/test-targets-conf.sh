#!/bin/bash
# LUNs described in targets.conf come back with Debian's stock tgt-admin.
#
# Two pools (one defined in CONFDIR, one elsewhere: bsopts conf=FILE),
# `vdlvm export` writes one file per volume into a conf.d folder included by
# a private targets.conf; the stock `tgt-admin --execute` (control port of
# our private tgtd, -C) exports them (it skips backing stores whose path is
# no file: the activation paths RUNDIR/vol/POOL/VOL make them files); data
# written through iSCSI reads back after tgtd is restarted and tgt-admin
# runs again; `tgt-admin --update IQN` adds a LUN exported later and
# deletes it after `vdlvm unexport`; a deactivated volume is skipped by
# tgt-admin and refused by the module.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v tgt-admin
requires qemu-img --version
requires sh -c 'qemu-img --help | grep -qw iscsi'
requires command -v iscsi-readcapacity16

MiB=$((1024 * 1024))

conf=$(make_pool_conf p0 2 64MiB 4MiB)
vdlvm pool create "$conf" || fail "pool create p0 failed"
mkdir -p "$tmp/defs"
cat > "$tmp/defs/q1.yaml" <<EOF
pool: q1
devices:
  - name: d0
    path: $tmp/q1-d0.img
    size: 64MiB
EOF
vdlvm pool create "$tmp/defs/q1.yaml" || fail "pool create q1 failed"
vdlvm vol create p0/v0 --size 40MiB || fail "vol create p0/v0 failed"
vdlvm vol create p0/v1 --size 8MiB || fail "vol create p0/v1 failed"
vdlvm vol create q1/w0 --size 16MiB || fail "vol create q1/w0 failed"

confd=$tmp/conf.d
mkdir -p "$confd"
printf 'include %s/*.conf\n' "$confd" > "$tmp/targets.conf"
iqn0=$(tgt_iqn v0)
iqnw=$(tgt_iqn w0)
iqn1=$(tgt_iqn v1)

vdlvm export p0/v0 --target "$iqn0" --conf "$confd/vdlvm-p0-v0.conf" > "$tmp/export.out" ||
    fail "vdlvm export p0/v0 failed"
grep -q "tgt-admin --update $iqn0" "$tmp/export.out" || fail "export does not say how to apply it: $(cat "$tmp/export.out")"
vdlvm export q1/w0 --target "$iqnw" --lun 3 --initiator-address 127.0.0.1 \
    --conf "$confd/vdlvm-q1-w0.conf" || fail "vdlvm export q1/w0 failed"
[ -f "$VDLVM_RUNDIR/vol/p0/v0" ] || fail "export did not activate p0/v0"
grep -q "bsopts conf=$tmp/defs/q1.yaml" "$confd/vdlvm-q1-w0.conf" ||
    fail "q1 (defined outside CONFDIR) has no bsopts conf=: $(cat "$confd/vdlvm-q1-w0.conf")"
! grep -q bsopts "$confd/vdlvm-p0-v0.conf" || fail "p0 (in CONFDIR) got bsopts"
# Wrong uses: a volume that does not exist, a LUN taken, a foreign file.
expect_fail 1 "not found" vdlvm export p0/nope --target "$iqn0" --conf "$confd/x.conf"
expect_fail 1 "already used" vdlvm export p0/v1 --target "$iqn0" --lun 1 --conf "$confd/vdlvm-p0-v1.conf"
echo '<target iqn.2024-01.org.other:x>' > "$confd/other.conf"
expect_fail 1 "not written by" vdlvm export p0/v1 --target "$iqn1" --conf "$confd/other.conf"
expect_fail 1 "not written by" vdlvm unexport p0/v1 --conf "$confd/other.conf"
rm -f "$confd/other.conf"
expect_fail 2 "not an iSCSI name" vdlvm export p0/v1 --target "bad name"
[ ! -e "$confd/vdlvm-p0-v1.conf" ] || fail "a refused export left a file"

# tgt-admin: the module of the build, our control port.
tgtadmin() { timeout 120 tgt-admin -C "$tgtd_ctl" -c "$tmp/targets.conf" "$@"; }
lun_url() { echo "iscsi://$tgtd_addr:$tgtd_port/$1/$2"; }
luns_of() {   # the LUNs (besides 0) tgtd shows for target IQN
    tgt_adm --lld iscsi --mode target --op show |
        awk -v t="$1" '/^Target [0-9]+:/ { on = ($3 == t) }
                       on && /^ *LUN: [0-9]+/ && $2 != 0 { print $2 }' | tr '\n' ' '
}

start_tgtd
tgtadmin --execute > "$tmp/tgt-admin.out" 2>&1 || fail "tgt-admin --execute failed: $(cat "$tmp/tgt-admin.out")"
[ "$(luns_of "$iqn0")" = "1 " ] || fail "target $iqn0 has LUNs '$(luns_of "$iqn0")', expected 1"
[ "$(luns_of "$iqnw")" = "3 " ] || fail "target $iqnw has LUNs '$(luns_of "$iqnw")', expected 3"
url0=$(lun_url "$iqn0" 1)
urlw=$(lun_url "$iqnw" 3)
[ "$(iscsi_size "$url0")" = $((40 * MiB)) ] || fail "LUN $url0 is not 40 MiB"
random_file "$tmp/in0" 40
random_file "$tmp/inw" 16
iscsi_write "$tmp/in0" "$url0" || fail "write to $url0 failed"
iscsi_write "$tmp/inw" "$urlw" || fail "write to $urlw failed"

# A LUN exported later: tgt-admin --update adds it, and removes it after
# unexport.
vdlvm export p0/v1 --target "$iqn1" --conf "$confd/vdlvm-p0-v1.conf" || fail "export p0/v1 failed"
tgtadmin --update "$iqn1" > "$tmp/update.out" 2>&1 || fail "tgt-admin --update failed: $(cat "$tmp/update.out")"
[ "$(luns_of "$iqn1")" = "1 " ] || fail "after --update, target $iqn1 has LUNs '$(luns_of "$iqn1")'"
[ "$(iscsi_size "$(lun_url "$iqn1" 1)")" = $((8 * MiB)) ] || fail "LUN of p0/v1 is not 8 MiB"
vdlvm unexport p0/v1 --conf "$confd/vdlvm-p0-v1.conf" || fail "unexport p0/v1 failed"
[ ! -e "$confd/vdlvm-p0-v1.conf" ] || fail "unexport left its file"
tgtadmin --update "$iqn1" > "$tmp/update.out" 2>&1 || fail "tgt-admin --update (delete) failed: $(cat "$tmp/update.out")"
tgt_adm --lld iscsi --mode target --op show | grep -q "$iqn1" && fail "target $iqn1 still exists after unexport and --update"
# --update ALL leaves the unchanged targets as they are.
tgtadmin --update ALL > "$tmp/update.out" 2>&1 || fail "tgt-admin --update ALL failed: $(cat "$tmp/update.out")"
[ "$(luns_of "$iqn0")" = "1 " ] || fail "after --update ALL, $iqn0 has LUNs '$(luns_of "$iqn0")'"

# Restart: the LUNs come back from the same files, data intact.
restart_tgtd
tgtadmin --execute > "$tmp/tgt-admin.out" 2>&1 || fail "tgt-admin --execute after restart failed: $(cat "$tmp/tgt-admin.out")"
url0=$(lun_url "$iqn0" 1)
urlw=$(lun_url "$iqnw" 3)
iscsi_read "$url0" "$tmp/out0" $((40 * MiB)) || fail "read $url0 after restart failed"
iscsi_read "$urlw" "$tmp/outw" $((16 * MiB)) || fail "read $urlw after restart failed"
cmp "$tmp/in0" "$tmp/out0" || fail "p0/v0 differs after restart"
cmp "$tmp/inw" "$tmp/outw" || fail "q1/w0 differs after restart"
note "two LUNs from targets.conf back after a restart, data identical"

# Deactivated: tgt-admin skips it (no file), and the module refuses the
# path given by hand.
restart_tgtd
vdlvm deactivate q1 || fail "deactivate q1 failed"
[ ! -e "$VDLVM_RUNDIR/vol/q1" ] || fail "deactivate left $VDLVM_RUNDIR/vol/q1"
tgtadmin --execute > "$tmp/tgt-admin.out" 2>&1 || fail "tgt-admin --execute failed: $(cat "$tmp/tgt-admin.out")"
[ -z "$(luns_of "$iqnw")" ] || fail "a deactivated volume was exported by tgt-admin"
[ "$(luns_of "$iqn0")" = "1 " ] || fail "p0/v0 not exported"
tgt_target_new 9 manual || fail "cannot create target 9"
if tgt_lun_new 9 1 vdlvm "$VDLVM_RUNDIR/vol/q1/w0" "conf=$tmp/defs/q1.yaml" 2>/dev/null; then
    fail "the module exported a deactivated volume"
fi
grep -q "not activated" "$tgtd_log" || fail "the module did not say 'not activated': $(tail -5 "$tgtd_log")"
# Activated again (all known pools), it is exported.
vdlvm activate > "$tmp/activate.out" || fail "vdlvm activate failed"
[ -f "$VDLVM_RUNDIR/vol/q1/w0" ] || fail "activate did not make q1/w0"
tgt_lun_new 9 1 vdlvm "$VDLVM_RUNDIR/vol/q1/w0" "conf=$tmp/defs/q1.yaml" ||
    fail "the module refused the activation path of q1/w0"
note "deactivated volume skipped and refused; activation path accepted"
