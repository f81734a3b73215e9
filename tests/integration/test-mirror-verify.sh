#!/bin/bash
# Mirror verify and repair (issue 4, test 4): a 2-leg mirror with one leg on
# nodeb and one on nodec (stock tgtds exporting files), served by nodea's
# tgtd.  After a verifying write load, a byte flipped in a leg's backing
# file behind vdlvm's back is reported by `vdlvm verify` (exit 3, the region
# listed), `vdlvm verify --repair` repairs it (exit 0), a second verify finds
# the legs equal, and every acknowledged write reads back.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
mirror_requires

mirror_nodes_setup
mirror_peers_start 64M
mirror_pool_create mv
mirror_vol_create mv/vol 32MiB
mirror_tgtd_start mv/vol

j=$tmp/journal
vdload_a write --verify "$j" --pattern seq --bs 64k --qd 8 --count $((32 * 16)) \
    --quiet "$url_a" >/dev/null || fail "sequential fill of the mirror failed"
vdload_a write --verify "$j" --pattern rand --bs 4k --qd 16 --time 2 \
    --quiet "$url_a" >/dev/null || fail "random writes to the mirror failed"
wait_in_sync mv/vol 30
out=$(vdlvm_a verify mv/vol) || fail "verify of a fresh mirror failed: $out"
note "verify before the damage: $out"

# Which leg is which: flip the byte on the leg that is not the repair
# source (the first in-sync leg, leg 0).
legs=$(mirror_legs mv/vol)
leg1=${legs#* }
leg1_dev=${leg1%%:*}
case $leg1_dev in
    b0) leg1_file=$tmp/nodeb-disk.img ;;
    c0) leg1_file=$tmp/nodec-disk.img ;;
    *) fail "unexpected leg 1 device $leg1_dev" ;;
esac
lba=$(( 20 * MiB / 512 + 37 ))          # in region 20 (1 MiB regions)
loc=$("$VDLOAD" locate "$leg1_file" "$lba") || fail "no stamp of LBA $lba in $leg1_file"
off=${loc#* }
byte_off=$(( off + 200 ))
old=$(od -An -tu1 -j "$byte_off" -N1 "$leg1_file" | tr -d ' ')
printf "$(printf '\\%03o' $(( old ^ 0xff )))" |
    dd of="$leg1_file" bs=1 seek="$byte_off" conv=notrunc,fsync status=none
note "flipped the byte at $byte_off of $leg1_file (leg 1, $leg1_dev; LBA $lba)"

rc=0
out=$(vdlvm_a verify mv/vol 2>&1) || rc=$?
note "verify after the damage: exit $rc: $out"
[ "$rc" = 3 ] || fail "verify exited $rc with a damaged leg; expected 3"
grep -q "1 of 32 regions of 1MiB differ" <<<"$out" || fail "verify should report one region of 32"
grep -q "region 20: bytes $((20 * MiB))-$((21 * MiB - 1))" <<<"$out" ||
    fail "verify does not list region 20"

rc=0
out=$(vdlvm_a verify mv/vol --repair 2>&1) || rc=$?
note "verify --repair: exit $rc: $out"
[ "$rc" = 0 ] || fail "verify --repair exited $rc; expected 0"
grep -q "1 of 1 regions repaired" <<<"$out" || fail "verify --repair did not repair the region"
[ "$(od -An -tu1 -j "$byte_off" -N1 "$leg1_file" | tr -d ' ')" = "$old" ] ||
    fail "the flipped byte in $leg1_file was not restored"

rc=0
out=$(vdlvm_a verify mv/vol 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "verify after repair exited $rc: $out"
note "verify after repair: $out"
out=$(vdload_a verify --journal "$j" "$url_a") || fail "acknowledged writes lost: $out"
note "vdload verify: $out"

# The same without a tgtd holding the pool (vdlvm opens the pool itself).
stop_tgtd "$a_ctl" "$a_pid"
printf '\x00' | dd of="$leg1_file" bs=1 seek="$byte_off" conv=notrunc,fsync status=none
[ "$old" != 0 ] || printf '\x01' | dd of="$leg1_file" bs=1 seek="$byte_off" conv=notrunc,fsync status=none
rc=0
out=$(vdlvm_a -c "$conf" verify mv/vol 2>&1) || rc=$?
[ "$rc" = 3 ] || fail "offline verify exited $rc with a damaged leg: $out"
rc=0
out=$(vdlvm_a -c "$conf" verify mv/vol --repair 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "offline verify --repair exited $rc: $out"
[ "$(od -An -tu1 -j "$byte_off" -N1 "$leg1_file" | tr -d ' ')" = "$old" ] ||
    fail "offline repair did not restore the byte"
note "offline verify/repair: ok"
