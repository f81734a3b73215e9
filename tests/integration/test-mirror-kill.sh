#!/bin/bash
# integration: long
# Mirror crash consistency (issue 4, test 2): a 2-leg mirror with one leg on
# nodeb and one on nodec (stock tgtds exporting files), served by nodea's
# tgtd.  Fifty times in a row (issue 8: 50 rounds; MIRROR_KILL_ROUNDS changes it): a verifying write load (vdload write
# --verify) runs, the tgtd exporting the mirror is killed with SIGKILL at a
# random moment of it, and a new tgtd is started.  After each restart every
# acknowledged write reads back (vdload verify of the whole journal), and
# once the resync the restart started is over, `vdlvm verify` finds the two
# legs equal (exit 0).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
mirror_requires

ROUNDS=${MIRROR_KILL_ROUNDS:-50}
VOL_MIB=16

mirror_nodes_setup
mirror_peers_start 64M
mirror_pool_create mk
mirror_vol_create mk/vol ${VOL_MIB}MiB
PV=mk/vol
mirror_tgtd_start $PV

j=$tmp/journal
vdload_a write --verify "$j" --pattern seq --bs 256k --qd 8 --count $((VOL_MIB * 4)) \
    --quiet "$url_a" >/dev/null || fail "filling the mirror failed"

acked_total=0 doubt_total=0 dirty_max=0 t_start=$(now)
for (( round = 1; round <= ROUNDS; round++ )); do
    # Mixed sizes so writes straddle regions; a 5 MiB window that moves from
    # round to round, so that the bitmap has set and lazily cleared bits;
    # the kill comes 0.3-1.5 s in.
    bs=$(( (round % 3 == 0) ? 65536 : 4096 ))
    win=$(( (round * 3 % 11) * MiB )):$(( 5 * MiB ))
    ip netns exec "$NS_A" timeout 60 "$VDLOAD" write --verify "$j" --continue-on-error \
        --io-timeout 5 --reconnect-timeout 1 --bs $bs --qd 16 --time 10 --range $win --json --quiet \
        "$url_a" > "$tmp/load.json" 2> "$tmp/load.err" &
    load_pid=$!
    cleanup_fn kill_quiet "$load_pid"
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.3 + (r % 120) / 100 }')"
    mirror_tgtd_kill
    # vdload gives up reconnecting within a second or so; its journal marks
    # the writes cut off as in doubt.
    wait "$load_pid" || true
    grep -q '"journal_records"' "$tmp/load.json" ||
        fail "round $round: vdload did not finish: $(cat "$tmp/load.json" "$tmp/load.err")"
    acked_total=$(( acked_total + $(grep -o '"write":{"ios":[0-9]*' "$tmp/load.json" | sed 's/.*://') ))
    doubt_total=$(( doubt_total + $(sed -n 's/.*"in_doubt":\([0-9]*\).*/\1/p' "$tmp/load.json") ))

    mirror_tgtd_start $PV
    d=$(resync_field $PV dirty_regions)
    if [ -z "$d" ]; then
        # Seen once in ~40 rounds: show why, then give it a few seconds.
        note "round $round: status failed right after the restart: $(cat "$tmp/status.err")"
        for (( i = 0; i < 50 && ${#d} == 0; i++ )); do
            sleep 0.2
            d=$(resync_field $PV dirty_regions)
        done
        [ -n "$d" ] || fail "round $round: no status after the restart: $(cat "$tmp/status.err")"
    fi
    [ "${d:-0}" -le "$dirty_max" ] || dirty_max=$d
    out=$(vdload_a verify --journal "$j" "$url_a") ||
        fail "round $round: acknowledged writes lost after kill -9: $out"
    grep -q " 0 lost, 0 stale, 0 corrupt" <<<"$out" || fail "round $round: $out"
    wait_in_sync $PV 60
    rc=0
    vout=$(vdlvm_a verify $PV 2>&1) || rc=$?
    [ "$rc" = 0 ] || fail "round $round: legs differ after resync: exit $rc: $vout"
    note "round $round: killed during ${bs}-byte writes to $win; $d dirty regions seen after the restart; $out; legs equal"
done
note "RESULT $ROUNDS kills in $(elapsed "$t_start" "$(now)") s: $acked_total acknowledged writes, $doubt_total in doubt, all read back; at most $dirty_max dirty regions (of $VOL_MIB) seen after a restart; legs equal after every resync"
