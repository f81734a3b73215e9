#!/bin/bash
# Issue 14: the asynchronous path on a remote device whose peer dies.  A
# linear volume on nodeb's LUN (a stock tgtd rdwr export in its own network
# namespace), exported by nodea's tgtd with bs_vdlvm (async path on, the
# inline path off); a 4 KiB random read/write load at queue depth 16 runs
# against it and nodeb's tgtd is killed (SIGKILL) 2 s in.  The initiator
# must get errors, never a hang: the load ends on its own in bounded time
# with errors counted, nodea's tgtd answers tgtadm throughout, and the
# failed writes are counted in the device's error counters (vdlvm stats).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
source "$(dirname "$0")/remote-common.sh"
mirror_requires

mirror_nodes_setup
remote_peer_start b 128M
conf=$tmp/ak.yaml
cat > "$conf" <<EOF2
pool: ak
extent_size: 4MiB
devices:
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: 2000ms
EOF2
vdlvm_a pool create "$conf" || fail "pool create failed"
vdlvm_a vol create ak/vol0 --size 64MiB || fail "vol create failed"
export VDLVM_INLINE=0
mirror_tgtd_start ak/vol0
tgtd_log() { cat "$tmp/tgtd-$a_ctl.log" 2>/dev/null || true; }

# a good run first: the async path is used and errors are none
vdload_a write --bs 4k --qd 16 --time 2 --json --quiet "$url_a" > "$tmp/ok.json" ||
    fail "load before the kill failed: $(cat "$tmp/ok.json")"
grep -q "asynchronous I/O: commands start on the main thread" <(tgtd_log) ||
    fail "tgtd did not use the asynchronous path: $(tgtd_log | tail -n 20)"

t0=$(now)
in_a timeout 90 "$VDLOAD" write --continue-on-error --io-timeout 15 --reconnect-timeout 20 \
    --bs 4k --qd 16 --time 12 --json --quiet "$url_a" > "$tmp/load.json" 2>"$tmp/load.err" &
load_pid=$!
cleanup_fn kill_quiet "$load_pid"
sleep 2
kill -9 "$b_pid"
note "nodeb's tgtd killed at $(elapsed "$t0" "$(now)") s"
# nodea's tgtd keeps answering while its commands fail
for i in 1 2 3 4 5; do
    timeout 5 tgtadm -C "$a_ctl" --mode target --op show >/dev/null ||
        fail "nodea's tgtd did not answer tgtadm within 5 s (round $i)"
    sleep 1
done
rc=0
wait "$load_pid" || rc=$?
secs=$(elapsed "$t0" "$(now)")
note "load ended after $secs s (rc $rc): $(cat "$tmp/load.json")"
[ "$rc" != 124 ] || fail "the load hung (killed by its 90 s timeout)"
errs=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' "$tmp/load.json")
[ -n "$errs" ] || fail "no error count in the load's output: $(cat "$tmp/load.json") $(cat "$tmp/load.err")"
[ "$errs" -gt 0 ] || fail "no I/O error after the peer was killed"
awk -v s="$secs" 'BEGIN { exit !(s < 60) }' || fail "the load took $secs s to end"
timeout 5 tgtadm -C "$a_ctl" --mode target --op show >/dev/null || fail "nodea's tgtd stopped answering"
note "initiator got $errs errors, no hang; ok"
we=$(vdlvm_a -c "$conf" stats ak --json | python3 -c '
import json, sys
print([d for d in json.load(sys.stdin)["devices"] if d["device"] == "b0"][0]["errors"]["write"])') ||
    fail "vdlvm stats of nodea's tgtd failed"
[ "$we" -ge 1 ] || fail "the failed writes were not counted in b0's write errors ($we)"
note "b0 write errors counted: $we"
