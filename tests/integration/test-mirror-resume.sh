#!/bin/bash
# Mirror resync resume (issue 4, test 3): a 64 MiB 2-leg mirror with one leg
# on nodeb and one on nodec, served by nodea's tgtd.  nodeb's link goes down
# while the whole volume is rewritten, so all 64 regions need a resync; the
# resync, slowed down with `vdlvm resync --rate`, starts by itself when the
# link is back and is interrupted twice by a tgtd restart (a clean stop,
# then kill -9).  After each restart it resumes where it stopped: done_bytes
# never goes back (the first value after the restart is >= the last one
# before), never to 0, and the bytes sent to nodeb after the restart are
# about what was left, not the whole volume.  At the end the legs are equal
# and every acknowledged write reads back.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
mirror_requires

VOL_MIB=64
RATE=8MiB RATE_B=$((8 * MiB))

mirror_nodes_setup
mirror_peers_start 160M
mirror_pool_create mr
mirror_vol_create mr/vol ${VOL_MIB}MiB
PV=mr/vol
mirror_tgtd_start $PV

j=$tmp/journal
fill() {
    vdload_a write --verify "$j" --pattern seq --bs 256k --qd 8 --count $((VOL_MIB * 4)) \
        --quiet "$url_a" >/dev/null || fail "writing the whole mirror failed"
}
fill
wait_in_sync $PV 30
node_down b
fill
[ "$(leg_state $PV b0)" = failed ] || fail "b0 not failed with its link down: $(mirror_status $PV)"
dirty=$(resync_field $PV dirty_regions)
[ "$dirty" = "$VOL_MIB" ] || fail "$dirty dirty regions, expected $VOL_MIB"
# The rate limit is set while no leg can be resynced; it stays.
vdlvm_a resync $PV --rate $RATE || fail "vdlvm resync --rate failed"
[ "$(resync_field $PV rate_limit)" = "$RATE_B" ] ||
    fail "rate limit not shown: $(mirror_status $PV)"
node_restore b

done_bytes() { resync_field $PV done_bytes; }
# watch_until MIN_DONE: poll done_bytes until it reaches MIN_DONE (bounded);
# it must never decrease nor fall to 0 once above.  Sets last_done.
watch_until() {
    local min=$1 i d
    for (( i = 0; i < 400; i++ )); do
        d=$(done_bytes)
        if [ -n "$d" ]; then
            [ "$d" -ge "${last_done:-0}" ] ||
                fail "done_bytes went back from $last_done to $d"
            last_done=$d
            [ "$d" -ge "$min" ] && return 0
        fi
        sleep 0.1
    done
    fail "resync did not reach $min done bytes in 40 s: $(mirror_status $PV)"
}

last_done=0
t0=$(now)
watch_until $((16 * MiB))
total=$(resync_field $PV total_bytes)
[ "$total" = $((VOL_MIB * MiB)) ] || fail "resync total_bytes $total, expected $((VOL_MIB * MiB))"
rate=$(resync_field $PV rate_bytes_per_s)
note "resync started by itself; $last_done of $total bytes done after $(elapsed "$t0" "$(now)") s (rate $rate B/s, limit $RATE_B)"
[ "$rate" -le $((RATE_B * 3 / 2)) ] || fail "resync rate $rate above the limit $RATE_B"

# restart HOW: stop (clean) or kill (-9) nodea's tgtd mid-resync, start it
# again, set the rate again; check the resume.
restart() {
    local how=$1 before tx0 tx1 first left sent
    before=$(done_bytes)
    if [ "$how" = kill ]; then mirror_tgtd_kill; else stop_tgtd "$a_ctl" "$a_pid"; fi
    tx0=$(tx_bytes b)
    mirror_tgtd_start $PV
    vdlvm_a resync $PV --rate $RATE >/dev/null || fail "$how: vdlvm resync --rate failed"
    first=$(done_bytes)
    note "$how: done_bytes $before before the restart, $first after"
    [ -n "$first" ] && [ "$first" -ge "$before" ] ||
        fail "$how: done_bytes went back from $before to '$first' after the restart"
    local logline
    logline=$(grep -o "resync of [0-9]* bytes from leg [0-9]* started ([0-9]* done before)" "$tgtd_log" | head -n 1)
    note "$how: tgtd log: $logline"
    local prev
    prev=$(sed -n 's/.*(\([0-9]*\) done before)/\1/p' <<<"$logline")
    [ -n "$prev" ] && [ "$prev" -ge "$before" ] ||
        fail "$how: the resync restarted from $prev, not from $before"
    left=$(( total - before ))
    last_done=$first
    if [ "$how" = stop ]; then
        watch_until $(( before + 16 * MiB ))
    else
        watch_until "$total"
        wait_in_sync $PV 60
    fi
    tx1=$(tx_bytes b)
    sent=$(( tx1 - tx0 ))
    note "$how: resumed at $first; $sent bytes sent to nodeb after the restart up to done_bytes $last_done ($left were left)"
    [ "$sent" -le $(( last_done - before + 8 * MiB + MiB )) ] ||
        fail "$how: $sent bytes sent to nodeb after the restart: more than the $((last_done - before)) bytes left to copy"
    eval "result_$how=\"done_bytes $before before, $first after; resync restarted from $prev; $sent bytes sent for the $((last_done - before)) bytes copied after the restart\""
}
restart stop
restart kill

out=$(vdload_a verify --journal "$j" "$url_a") || fail "acknowledged writes lost: $out"
note "$out"
rc=0
out=$(vdlvm_a verify $PV 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "legs differ after the resync: exit $rc: $out"
note "RESULT clean restart: $result_stop"
note "RESULT kill -9: $result_kill"
