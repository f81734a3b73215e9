#!/bin/bash
# Mirror failover (issue 4, test 1): a 64 MiB 2-leg mirror with one leg on
# nodeb and one on nodec (stock tgtds exporting files over veth links),
# served by nodea's tgtd with the vdlvm module.
#
# Two rounds (nodeb silent with netem loss 100%, then nodeb's link down),
# each during a verifying write load (vdload write --verify) confined to an
# 8 MiB window of the volume:
#   - no write fails: vdload reports zero errors, timeouts and in-doubt
#     writes (writes wait at most for the device timeout, then complete on
#     the other leg);
#   - when nodeb is back, resync starts by itself and ends (bounded);
#   - the bytes nodea sends to nodeb from its return until the end of the
#     resync (veth tx counter) are at most twice the data written while it
#     was away plus one region per region written, and far below the volume
#     size.
# Then each leg alone (the other node silent) serves the whole volume with
# every acknowledged write intact (vdload verify of the whole journal).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
mirror_requires

VOL_MIB=64
WIN_OFF=$((24 * MiB)) WIN_LEN=$((8 * MiB))   # region-aligned load window
REGION=$MiB
TIMEOUT_MS=3000

mirror_nodes_setup
mirror_peers_start 160M
mirror_pool_create mf "${TIMEOUT_MS}ms"
mirror_vol_create mf/vol ${VOL_MIB}MiB
mirror_tgtd_start mf/vol
PV=mf/vol

j=$tmp/journal
vdload_a write --verify "$j" --pattern seq --bs 256k --qd 8 \
    --count $((VOL_MIB * 4)) --quiet "$url_a" >/dev/null ||
    fail "filling the mirror failed"
wait_in_sync $PV 30
# The cleaner clears the bits of the fill once both legs have it.
clean_wait() { [ "$(resync_field $PV dirty_regions)" = 0 ]; }
wait_for 20 clean_wait || fail "dirty bits of the fill not cleared: $(mirror_status $PV)"
note "filled $VOL_MIB MiB; legs $(mirror_legs $PV), in sync, bitmap clean"

# round NAME INJECT: the fault on nodeb during a load; then back and resync.
round() {
    local name=$1 inject=$2
    local load=$tmp/load-$1.json
    local t_fault t_back t_sync tx0 tx1 st
    ip netns exec "$NS_A" timeout 120 "$VDLOAD" write --verify "$j" --continue-on-error --io-timeout 30 \
        --bs 64k --qd 8 --time 10 --range "$WIN_OFF:$WIN_LEN" --json --quiet \
        --started "$tmp/load-$name.started" "$url_a" > "$load" 2> "$tmp/load-$name.err" &
    local load_pid=$!
    cleanup_fn kill_quiet "$load_pid"
    wait_started "$tmp/load-$name.started" "$load_pid" ||
        fail "$name: the load did not start: $(cat "$tmp/load-$name.err")"
    t_fault=$(now)
    $inject b || fail "$name: cannot inject the fault"
    # The leg on nodeb fails (after the device timeout); writes go on.
    local i failed_seen=0
    for (( i = 0; i < 150; i++ )); do
        [ "$(leg_state $PV b0)" = failed ] && { failed_seen=1; break; }
        sleep 0.1
    done
    [ "$failed_seen" = 1 ] || fail "$name: leg b0 not marked failed: $(mirror_status $PV)"
    note "$name: nodeb away: ${silent_how:-link down}"
    silent_how=
    note "$name: leg b0 failed $(elapsed "$t_fault" "$(now)") s after the fault"
    wait "$load_pid" || fail "$name: the write load failed: $(cat "$tmp/load-$name.err")"
    local errs
    errs=$(vdload_errors "$load")
    note "$name: load while nodeb away: $errs; $(grep -o '"write":{"ios":[0-9]*' "$load" | sed 's/.*://') writes"
    [ "$errs" = "errors 0 timeouts 0 cancelled 0 in_doubt 0" ] ||
        fail "$name: writes failed while nodeb was away: $(cat "$load")"
    # Latency of the writes that waited for the device timeout.
    local maxlat
    maxlat=$(grep -o '"write":{[^}]*}' "$load" | grep -o '"max":[0-9.]*' |
             awk -F: '{ printf "%.0f", $2 / 1000 }' || true)
    note "$name: slowest write ${maxlat:-?} ms (device timeout $TIMEOUT_MS ms)"
    local wbytes dirty
    wbytes=$(grep -o '"write":{"ios":[0-9]*,"bytes":[0-9]*' "$load" | sed 's/.*"bytes"://')
    dirty=$(resync_field $PV dirty_regions)
    [ "$(leg_state $PV b0)" = failed ] || fail "$name: b0 came back before the link did"
    note "$name: $dirty dirty regions while nodeb away"

    # Back: resync by itself, bounded; count bytes sent to nodeb.
    tx0=$(tx_bytes b)
    t_back=$(now)
    node_restore b
    local started=0
    for (( i = 0; i < 600; i++ )); do
        st=$(mirror_status $PV)
        grep -q '"state":"\(resyncing\|stale\)"\|"resync":{"state":"running"' <<<"$st" && started=1
        if mirror_in_sync $PV && [ "$(leg_state $PV b0)" = in-sync ]; then break; fi
        sleep 0.1
    done
    mirror_in_sync $PV && [ "$(leg_state $PV b0)" = in-sync ] ||
        fail "$name: not in sync 60 s after nodeb came back: $(mirror_status $PV)"
    t_sync=$(elapsed "$t_back" "$(now)")
    tx1=$(tx_bytes b)
    st=$(mirror_status $PV)
    local sent=$((tx1 - tx0)) total
    total=$(resync_field $PV total_bytes)
    # Bound: twice the data written while away (each byte once: at most the
    # window) plus one region per region written.
    local w=$wbytes
    [ "$w" -le "$WIN_LEN" ] || w=$WIN_LEN
    local bound=$(( 2 * w + (WIN_LEN / REGION) * REGION ))
    note "$name: in sync ${t_sync}s after nodeb came back (resync seen running: $started); resync total_bytes $total"
    note "$name: sent to nodeb during resync: $sent bytes; written while away: $wbytes bytes in a $WIN_LEN-byte window; bound $bound; volume $((VOL_MIB * MiB))"
    [ "$sent" -le "$bound" ] ||
        fail "$name: $sent bytes sent to nodeb during resync, more than $bound"
    [ "$sent" -lt $((VOL_MIB * MiB / 2)) ] ||
        fail "$name: resync sent $sent bytes, like a full copy of the volume"
    [ "$sent" -ge "$total" ] && [ "$total" -gt 0 ] ||
        fail "$name: the resync of $total bytes sent only $sent bytes to nodeb"
    [ "$total" -le "$WIN_LEN" ] || fail "$name: resync total_bytes $total beyond the written window"
    eval "result_$name=\"no failed write (slowest ${maxlat:-?} ms); resync ${t_sync}s, ${sent} bytes sent to nodeb for ${wbytes} bytes written in an ${WIN_LEN}-byte window (resync total ${total})\""
    out=$(vdload_a verify --journal "$j" "$url_a") || fail "$name: verify failed: $out"
    note "$name: $out"
}
round silent node_silent
round linkdown node_down

# Each leg alone serves the whole volume.
alone() { # AWAY_NODE THE_OTHER_DEVICE
    local away=$1 dev=$2 out t0
    t0=$(now)
    node_silent "$away" || fail "cannot silence node $away"
    out=$(vdload_a verify --journal "$j" "$url_a") ||
        fail "leg $dev alone: acknowledged writes do not read back: $out"
    note "leg $dev alone (node$away silent): $out ($(elapsed "$t0" "$(now)") s)"
    grep -q "$((VOL_MIB * MiB / 512)) blocks checked" <<<"$out" ||
        fail "leg $dev alone: verify did not check the whole volume"
    # and it takes writes
    vdload_a write --verify "$j" --bs 4k --qd 8 --time 1 --quiet "$url_a" >/dev/null ||
        fail "leg $dev alone: writes failed"
    node_restore "$away"
    for (( i = 0; i < 600; i++ )); do
        [ "$(leg_state $PV b0)" = in-sync ] && [ "$(leg_state $PV c0)" = in-sync ] &&
            mirror_in_sync $PV && break
        sleep 0.1
    done
    mirror_in_sync $PV || fail "not in sync after node$away came back: $(mirror_status $PV)"
}
alone b c0
alone c b0
out=$(vdload_a verify --journal "$j" "$url_a") || fail "final verify failed: $out"
note "final: $out"
rc=0
out=$(vdlvm_a verify $PV 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "vdlvm verify after the rounds: exit $rc: $out"

note "RESULT silent: $result_silent"
note "RESULT link down: $result_linkdown"
