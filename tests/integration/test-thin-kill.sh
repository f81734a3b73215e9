#!/bin/bash
# Thin volumes and kill -9 (issue 10): a 10 GiB thin volume on a pool of two
# 1 GiB sparse files.  THIN_KILL_ROUNDS times (default 5) a verifying load
# of 4 KiB random first writes (vdload write --verify, every write to a
# chunk never written before: each round uses a fresh 1 GiB window) runs,
# tgtd is killed with SIGKILL 0.3-1.2 s into it, and a new tgtd is started:
# every acknowledged write reads back (vdload verify of the whole journal:
# 0 lost, 0 stale, 0 corrupt).  At the end the whole volume is discarded and
# the pool's allocated space must drop to 0: chunks allocated for writes
# that were never acknowledged were not leaked for good.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/thin-common.sh"
thin_requires
requires_file "$VDLOAD"

ROUNDS=${THIN_KILL_ROUNDS:-5}

conf=$(thin_pool_conf tk 2 1GiB)
vdlvm pool create "$conf" || fail "pool create failed"
out=$(vdlvm vol create tk/thin --size 10GiB --thin 2>&1) || thin_create_failed "$out"

export_thin() {
    start_tgtd
    tgt_target_new 1 thin || fail "cannot create target"
    tgt_lun_new 1 1 vdlvm tk/thin "conf=$conf" || fail "cannot export tk/thin"
    url=$(iscsi_url 1 1)
}

kill_tgtd() {
    kill -KILL "$tgtd_pid" 2>/dev/null || true
    wait "$tgtd_pid" 2>/dev/null || true
    rm -f "/var/run/tgtd/socket.$tgtd_ctl" "/var/run/tgtd/socket.$tgtd_ctl.lock"
    _forget_tgtd "$tgtd_pid"
}

export_thin
j=$tmp/journal
acked_total=0 doubt_total=0
for (( round = 1; round <= ROUNDS; round++ )); do
    win=$(( (round - 1) * GiB )):$GiB
    rm -f "$tmp/started"
    timeout 60 "$VDLOAD" write --verify "$j" --continue-on-error \
        --io-timeout 5 --reconnect-timeout 1 --bs 4096 --qd 16 --time 10 \
        --range "$win" --started "$tmp/started" --json --quiet \
        "$url" > "$tmp/load.json" 2> "$tmp/load.err" &
    load_pid=$!
    cleanup_fn kill_quiet "$load_pid"
    wait_started "$tmp/started" "$load_pid" 60 ||
        fail "round $round: the load did not start: $(cat "$tmp/load.err")"
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.3 + (r % 90) / 100 }')"
    kill_tgtd
    wait "$load_pid" || true
    grep -q '"journal_records"' "$tmp/load.json" ||
        fail "round $round: vdload did not finish: $(cat "$tmp/load.json" "$tmp/load.err")"
    acked=$(grep -o '"write":{"ios":[0-9]*' "$tmp/load.json" | sed 's/.*://')
    doubt=$(sed -n 's/.*"in_doubt":\([0-9]*\).*/\1/p' "$tmp/load.json")
    acked_total=$(( acked_total + acked ))
    doubt_total=$(( doubt_total + ${doubt:-0} ))
    [ "$acked" -gt 0 ] || fail "round $round: no write was acknowledged before the kill"

    export_thin
    out=$(timeout 300 "$VDLOAD" verify --journal "$j" "$url") ||
        fail "round $round: acknowledged writes lost after kill -9: $out"
    grep -q " 0 lost, 0 stale, 0 corrupt" <<<"$out" || fail "round $round: $out"
    note "round $round: killed during first writes to $win ($acked acknowledged, ${doubt:-0} in doubt); $out; allocated $(vol_field tk/thin allocated)"
done

# Nothing leaked: discard everything, the pool allocates nothing any more.
for (( g = 0; g < 10; g++ )); do   # qemu-io takes at most 2 GiB at once
    qemu_io "$url" "discard $(( g * GiB )) 1G" ||
        fail "discarding GiB $g of the volume failed: $(cat "$tmp/qio.out")"
done
va=$(vol_field tk/thin allocated)
pa=$(pool_field tk allocated)
[ "$va" = 0 ] && [ "$pa" = 0 ] ||
    fail "after discarding the whole volume: volume allocated $va, pool allocated $pa (leaked chunks)"
note "RESULT $ROUNDS kills during first writes: $acked_total acknowledged writes, $doubt_total in doubt, all read back; no chunk leaked"
