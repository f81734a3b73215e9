#!/bin/bash
# Live rebalance (issue 12): tgtd exports a linear volume over three devices
# of a pool; the volume is filled through iSCSI by vdload (stamped blocks,
# a journal of acknowledged writes); a fourth, empty device joins with
# `vdlvm pool apply`; `vdlvm pool rebalance` moves extents onto it while a
# verifying 4 KiB write load runs, and tgtd is killed with SIGKILL in the
# middle.  After the restart the rebalance resumes by itself (its job is in
# the pool's metadata); when it is over every device's used extents are
# within one extent of its share (status --json), a second rebalance has
# nothing to do, and vdload verify finds every acknowledged write.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires python3 --version
VDLOAD=$BUILD/vdload
requires_file "$VDLOAD"

VOL_MIB=96
conf=$(make_pool_conf pool0 3 64MiB 4MiB)
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
vdlvm vol create pool0/vol0 --size ${VOL_MIB}MiB > /dev/null || fail "vol create failed"

export_vol() {
    tgt_target_new 1 pool0 || fail "cannot create target"
    tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"
    url=$(iscsi_url 1 1)
    wait_for 10 test -S "$VDLVM_RUNDIR/pool0.sock" || fail "no control socket"
}
kill9_tgtd() {
    kill -KILL "$tgtd_pid" 2> /dev/null || true
    wait "$tgtd_pid" 2> /dev/null || true
    rm -f "/var/run/tgtd/socket.$tgtd_ctl" "/var/run/tgtd/socket.$tgtd_ctl.lock"
    _forget_tgtd "$tgtd_pid"
}
# status_json FILE: vdlvm status pool0 --json into FILE (retried briefly:
# right after a restart the module may still be opening the pool).
status_json() {
    local i
    for (( i = 0; i < 50; i++ )); do
        vdlvm status pool0 --json > "$1" 2> /dev/null && return 0
        sleep 0.2
    done
    fail "status --json failed"
}
move_field() { # FILE KEY
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["move"][sys.argv[2]])' "$1" "$2"
}

start_tgtd
export_vol
j=$tmp/journal
timeout 120 "$VDLOAD" write --verify "$j" --pattern seq --bs 256k --qd 8 \
    --count $(( VOL_MIB * 4 )) --quiet "$url" > /dev/null || fail "filling vol0 failed"

# Balanced over three devices: nothing to do.
vdlvm pool rebalance pool0 > "$tmp/r0.out" 2>&1 || fail "rebalance failed: $(cat "$tmp/r0.out")"
grep -q "balanced" "$tmp/r0.out" || fail "a balanced pool: $(cat "$tmp/r0.out")"

printf '  - name: d3\n    path: %s\n    size: 64MiB\n' "$tmp/pool0-d3.img" >> "$conf"
vdlvm pool apply pool0 > "$tmp/apply.out" 2>&1 || fail "pool apply failed: $(cat "$tmp/apply.out")"
note "d3 added: $(cat "$tmp/apply.out")"

# A verifying write load, then the rebalance, slow enough to be caught
# in the middle (4 MiB extents at 2 MiB/s: a loaded machine answers status late).
timeout 60 "$VDLOAD" write --verify "$j" --continue-on-error --io-timeout 5 \
    --reconnect-timeout 1 --bs 4k --qd 8 --time 30 --json --quiet \
    --started "$tmp/started" "$url" > "$tmp/load1.json" 2> "$tmp/load1.err" &
load_pid=$!
cleanup_fn kill_quiet "$load_pid"
wait_for 30 test -e "$tmp/started" || fail "the write load did not start"
vdlvm pool rebalance pool0 --rate 2MiB > "$tmp/r1.out" 2>&1 ||
    fail "rebalance failed: $(cat "$tmp/r1.out")"
grep -q "rebalance started" "$tmp/r1.out" || fail "rebalance: $(cat "$tmp/r1.out")"
# kill -9 once the first extent moved and the second is under way
saw=0
for (( i = 0; i < 200; i++ )); do
    vdlvm status pool0 --json > "$tmp/st.json" 2> /dev/null || true
    if python3 -c 'import json,sys
m=json.load(open(sys.argv[1]))["move"]
sys.exit(0 if m.get("rebalancing") and m["moves_done"] >= 1 and m["active"] and m["done_bytes"] > 0 else 1)' "$tmp/st.json" 2> /dev/null; then
        saw=1
        break
    fi
    sleep 0.1
done
[ "$saw" = 1 ] || fail "never saw the rebalance in the middle of a move: $(cat "$tmp/st.json")"
vdlvm status pool0 | grep -q "rebalancing: " || true
kill9_tgtd
note "tgtd killed with SIGKILL during a move: $(python3 -c 'import json,sys
m=json.load(open(sys.argv[1]))["move"]; print(m["moves_done"], "moves done,", m["done_bytes"], "bytes of extent", m["extent"], "copied")' "$tmp/st.json")"
wait "$load_pid" || true
grep -q '"journal_records"' "$tmp/load1.json" ||
    fail "vdload did not finish: $(cat "$tmp/load1.json" "$tmp/load1.err")"

# Restart: the rebalance goes on by itself.
start_tgtd
export_vol
out=$(timeout 60 "$VDLOAD" verify --journal "$j" "$url") ||
    fail "acknowledged writes lost after kill -9: $out"
note "after the restart: $out"
timeout 60 "$VDLOAD" write --verify "$j" --bs 4k --qd 8 --time 3 --json --quiet \
    "$url" > "$tmp/load2.json" 2> "$tmp/load2.err" &
load_pid=$!
cleanup_fn kill_quiet "$load_pid"
status_json "$tmp/st.json"
[ "$(move_field "$tmp/st.json" rebalancing)" = True ] ||
    [ "$(move_field "$tmp/st.json" moves_done)" -gt 0 ] ||
    fail "the rebalance did not resume: $(cat "$tmp/st.json")"
done_=0
for (( i = 0; i < 600; i++ )); do
    status_json "$tmp/st.json"
    if [ "$(move_field "$tmp/st.json" rebalancing)" = False ] &&
        [ "$(move_field "$tmp/st.json" active)" = False ]; then
        done_=1
        break
    fi
    sleep 0.1
done
[ "$done_" = 1 ] || fail "the rebalance did not finish: $(cat "$tmp/st.json")"
wait "$load_pid" || fail "write load after the restart failed: $(cat "$tmp/load2.err")"
python3 - "$tmp/st.json" <<'PY' || fail "not balanced: $(cat "$tmp/st.json")"
import json, sys
d = json.load(open(sys.argv[1]))
devs = d["devices"]
U = sum(x["used_extents"] for x in devs)
T = sum(x["extents"] for x in devs)
for x in devs:
    share = U * x["extents"] / T
    assert abs(x["used_extents"] - share) <= 1, (x["name"], x["used_extents"], share)
assert d["move"]["moves_abandoned"] == 0, d["move"]
print(" ".join("%s:%d" % (x["name"], x["used_extents"]) for x in devs), file=sys.stderr)
PY
note "balanced: $(python3 -c 'import json,sys
print(" ".join("%s=%d/%d" % (x["name"], x["used_extents"], x["extents"]) for x in json.load(open(sys.argv[1]))["devices"]))' "$tmp/st.json") (used/extents); after the restart: $(move_field "$tmp/st.json" moves_done) moves, $(move_field "$tmp/st.json" bytes_copied) bytes copied, $(move_field "$tmp/st.json" bytes_compared) compared"
vdlvm pool rebalance pool0 --wait > "$tmp/r2.out" 2>&1 || fail "rebalance failed: $(cat "$tmp/r2.out")"
grep -q "balanced" "$tmp/r2.out" || fail "second rebalance: $(cat "$tmp/r2.out")"

out=$(timeout 60 "$VDLOAD" verify --journal "$j" "$url") ||
    fail "acknowledged writes lost: $out"
grep -q " 0 lost, 0 stale, 0 corrupt" <<< "$out" || fail "$out"
note "vdload verify: $out"

# The mapping is durable: the same balance with tgtd stopped.
stop_tgtd
vdlvm -c "$conf" status pool0 --json > "$tmp/st2.json" || fail "status without tgtd failed"
python3 -c 'import json,sys
a=json.load(open(sys.argv[1]))["devices"]; b=json.load(open(sys.argv[2]))["devices"]
assert [x["used_extents"] for x in a]==[x["used_extents"] for x in b], (a, b)' "$tmp/st.json" "$tmp/st2.json" ||
    fail "the balance changed after tgtd stopped"
note "ok"
