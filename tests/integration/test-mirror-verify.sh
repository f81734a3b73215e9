#!/bin/bash
# Mirror verify and repair (issue 4, test 4): a 2-leg mirror with one leg on
# nodeb and one on nodec (stock tgtds exporting files), served by nodea's
# tgtd.  After a verifying write load, a byte flipped in a leg's backing
# file behind vdlvm's back is reported by `vdlvm verify` (exit 3, the region
# listed), `vdlvm verify --repair` repairs it (exit 0), a second verify finds
# the legs equal, and every acknowledged write reads back.  Progress: a
# verify inside tgtd shows in `vdlvm status` and as a bar on a terminal;
# without tgtd, one line per step in a log.
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

# Progress (issue 15): with nodeb's link slowed (netem delay, or tbf at 10
# MB/s on kernels without netem), a verify in
# tgtd takes a few seconds: `vdlvm status` shows it with a bar while it
# runs, and `vdlvm verify` on a terminal draws a bar redrawn in place.
in_b() { ip netns exec "$NS_B" "$@"; }
if in_b tc qdisc add dev "$IF_BA" root netem delay 20ms 2>/dev/null ||
    in_b tc qdisc add dev "$IF_BA" root tbf rate 80mbit burst 64kbit latency 500ms 2>/dev/null; then
    t0=$(now)
    vdlvm_a verify mv/vol > "$tmp/bg-verify.out" 2>&1 &
    vpid=$!
    seen=0
    for (( i = 0; i < 300; i++ )); do
        st=$(vdlvm_a status mv/vol 2>/dev/null) || true
        if grep -q "verify 'vol': \[" <<<"$st"; then seen=1; break; fi
        kill -0 "$vpid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$vpid" || fail "verify with a slow leg failed: $(cat "$tmp/bg-verify.out")"
    [ "$seen" = 1 ] || fail "status never showed the running verify ($(elapsed "$t0" "$(now)") s)"
    note "status during verify: $(grep "verify 'vol'" <<<"$st")"
    SHELL=/bin/sh timeout 120 script -qec "ip netns exec $NS_A $VDLVM verify mv/vol" /dev/null \
        > "$tmp/vbar.out" 2>&1 || fail "verify on a terminal failed: $(cat -v "$tmp/vbar.out")"
    grep -q $'\rverify mv/vol: \[' "$tmp/vbar.out" || fail "no verify bar redrawn in place: $(cat -v "$tmp/vbar.out")"
    grep -Eq 'B/s  [0-9]+:[0-9]{2} left' "$tmp/vbar.out" || fail "no rate and time left: $(cat -v "$tmp/vbar.out")"
    grep -q "legs equal" "$tmp/vbar.out" || fail "no verify result after the bar: $(cat -v "$tmp/vbar.out")"
    note "verify on a terminal: $(grep -o $'\r' "$tmp/vbar.out" | wc -l) redraws in $(elapsed "$t0" "$(now)") s"
    in_b tc qdisc del dev "$IF_BA" root || fail "cannot remove the delay"
else
    note "neither netem nor tbf in this kernel: the progress of a verify inside tgtd is not checked"
fi

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
# Without tgtd, progress in a log: one line per step, no carriage return.
rc=0
vdlvm_a -c "$conf" verify mv/vol > "$tmp/vlog.out" 2> "$tmp/vlog.err" || rc=$?
[ "$rc" = 0 ] || fail "offline verify after repair exited $rc: $(cat "$tmp/vlog.err")"
! grep -q $'\r' "$tmp/vlog.err" || fail "verify progress in a log has carriage returns"
steps=$(grep -c '^verify mv/vol: .*%' "$tmp/vlog.err" || true)
[ "$steps" -ge 3 ] || fail "verify progress in a log: $steps step lines: $(cat "$tmp/vlog.err")"
grep -q '^verify mv/vol: done' "$tmp/vlog.err" || fail "no end line in the log: $(cat "$tmp/vlog.err")"
note "offline verify to a log: $steps progress lines"
