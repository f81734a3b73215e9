#!/bin/bash
# Issue 8, "Done when": a degraded mirror accepts SYNCHRONIZE CACHE.  A 2-leg
# mirror (legs on nodeb and nodec, served by nodea's tgtd); then
#   1. node c goes silent (its answers to nodea vanish): writes go on with
#      one leg, and `qemu-io -c flush` on the LUN succeeds;
#   2. node c comes back, the mirror resyncs; then nodeb's LUN is deleted
#      (the peer answers, the LUN is gone): writes and flush succeed again.
# A write load runs up to the fault, so the failed leg holds unflushed writes.
# On 7d24c2a (and on main as of 34e62d5) the flush failed with MEDIUM ERROR (0C00h) in both cases (one
# unreachable device failed SYNCHRONIZE CACHE on every LUN of the pool); it
# needs the mirror flush that skips failed legs (defect 7).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
mirror_requires
requires qemu-io --version

PV=df/vol
mirror_nodes_setup
mirror_peers_start 64M
mirror_pool_create df 2000ms
mirror_vol_create $PV 16MiB
mirror_tgtd_start $PV

# qio CMD...: qemu-io commands on nodea's LUN; 0 when none failed
qio() {
    local args=() c rc=0
    for c in "$@"; do args+=(-c "$c"); done
    in_a timeout 120 qemu-io -f raw "${args[@]}" "$url_a" > "$tmp/qio.out" 2>&1 || rc=$?
    grep -q "failed" "$tmp/qio.out" && [ "$rc" = 0 ] && rc=1
    return "$rc"
}

qio "write -P 0x11 0 1M" "flush" || fail "flush of the healthy mirror failed: $(cat "$tmp/qio.out")"
# load_bg: writes to the LUN for a few seconds, so that the legs hold
# unflushed writes up to the moment of the fault (a flush in between would
# hide the defect: a device with nothing unflushed is not flushed).
load_bg() {
    rm -f "$tmp/load.started"
    ip netns exec "$NS_A" timeout 60 "$VDLOAD" write --continue-on-error --io-timeout 10 \
        --reconnect-timeout 5 --bs 4k --qd 4 --time 4 --range 4M:8M --json --quiet \
        --started "$tmp/load.started" "$url_a" > "$tmp/load.json" 2> "$tmp/load.err" &
    load_pid=$!
    cleanup_fn kill_quiet "$load_pid"
    wait_started "$tmp/load.started" "$load_pid" ||
        fail "the write load did not start: $(cat "$tmp/load.err")"
}

# 1. one leg's node silent, under a write load
load_bg
node_silent c || fail "cannot silence node c"
note "node c silent ($silent_how)"
wait "$load_pid" || note "vdload: $(cat "$tmp/load.err")"
# The first write finds c0 gone (after its 2 s timeout) and marks the leg failed.
qio "write -P 0x22 0 64k" || fail "write to the degraded mirror (or the SYNCHRONIZE CACHE qemu-io sends when it closes) failed: $(cat "$tmp/qio.out")"
st=$(leg_state $PV c0)
note "c0 is '$st' after the first write"
t0=$(now)
qio "write -P 0x23 64k 64k" "flush" ||
    fail "SYNCHRONIZE CACHE of the degraded mirror (node c silent) failed: $(cat "$tmp/qio.out")"
t_silent=$(elapsed "$t0" "$(now)")
qio "read -P 0x22 0 64k" "read -P 0x23 64k 64k" || fail "read back after the flush failed: $(cat "$tmp/qio.out")"
note "node c silent: write + flush took $t_silent s"

# 2. node c back, in sync again; then nodeb's LUN goes away
node_restore c
wait_in_sync $PV 120
load_bg
saved=$tgtd_ctl
tgtd_ctl=$b_ctl
# tgt refuses to delete an LU while a command is queued on it ("still
# active"), which under the load is often: retry, bounded.
wait_for 20 tgt_lun_delete 1 1 || fail "cannot delete nodeb's LUN"
tgtd_ctl=$saved
note "nodeb's LUN deleted (under a write load)"
wait "$load_pid" || note "vdload: $(cat "$tmp/load.err")"
qio "write -P 0x33 128k 64k" || fail "write with b0's LUN gone (or the SYNCHRONIZE CACHE qemu-io sends when it closes) failed: $(cat "$tmp/qio.out")"
t0=$(now)
qio "write -P 0x34 192k 64k" "flush" ||
    fail "SYNCHRONIZE CACHE of the degraded mirror (b0's LUN gone) failed: $(cat "$tmp/qio.out")"
t_gone=$(elapsed "$t0" "$(now)")
qio "read -P 0x33 128k 64k" "read -P 0x34 192k 64k" || fail "read back failed: $(cat "$tmp/qio.out")"
note "RESULT a degraded mirror accepts SYNCHRONIZE CACHE: node silent (write + flush ${t_silent}s), LUN gone (${t_gone}s)"
