#!/bin/bash
# Evacuation through two kill -9 of tgtd, then device removal (issue 12):
# tgtd exports a linear volume over three devices of a pool, filled through
# iSCSI by vdload (stamped blocks, a journal of acknowledged writes).  Bad
# input to `dev evacuate`, `pool rebalance` and `pool apply` is refused
# with a message and a non-zero exit, and changes nothing.  A fourth device
# joins with `pool apply`; `dev evacuate pool0/d0` runs under a verifying
# 4 KiB write load and tgtd is killed with SIGKILL twice in the middle of a
# move.  After each restart the evacuation resumes by itself (its job is in
# the metadata), every acknowledged write reads back, and in the end d0
# holds no extent, `pool apply` without d0 removes it, and the module's
# log shows every extent of d0 started and switched once and each
# interruption resuming the extent in flight from its checkpoint (so the
# bytes copied are at most the evacuated bytes plus one extent per
# interruption; the batch in flight is compared first, so in fact only
# the chunk in flight).  At 1 MiB/s a batch is one 4 MiB extent (a batch
# holds about a second of copying): the restarts and verifies between
# the kills need the evacuation to last (on a machine at load 15 one
# status poll, python included, takes about 2 s: at 2 MiB/s the first
# kill came after 7 of d0's 8 extents).  Batches under a crash are
# covered by vdsim and move_test.cc (a stop in the middle of a batch).
# integration: solo
# integration: long
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires python3 --version
VDLOAD=$BUILD/vdload
requires_file "$VDLOAD"

VOL_MIB=96
EXT=$((4 * 1024 * 1024))
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
dev_extents() { # FILE DEV
    python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); print([x["used_extents"] for x in d["devices"] if x["name"]==sys.argv[2]][0])' "$1" "$2"
}
# the state bad input must not change: devices, their use, the move
snapshot() {
    status_json "$tmp/snap.json"
    python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); m=d["move"]
print(sorted((x["name"], x["used_extents"], x["extents"]) for x in d["devices"]),
      m["active"], m["evacuating"], m["rebalancing"], m["moves_done"], m["moves_abandoned"])' "$tmp/snap.json"
    md5sum < "$conf"
}

start_tgtd
export_vol
j=$tmp/journal
timeout 120 "$VDLOAD" write --verify "$j" --pattern seq --bs 256k --qd 8 \
    --count $(( VOL_MIB * 4 )) --quiet "$url" > /dev/null || fail "filling vol0 failed"
status_json "$tmp/st0.json"
on_d0=$(dev_extents "$tmp/st0.json" d0)
[ "$on_d0" -gt 0 ] || fail "d0 holds no extent: $(cat "$tmp/st0.json")"

# ---- bad input: a message, a non-zero exit, nothing changed -------------
before=$(snapshot)
expect_fail nz "no device 'nosuch'" vdlvm dev evacuate pool0/nosuch --wait
expect_fail nz "pool|nopool" vdlvm dev evacuate nopool/d0
expect_fail nz "evacuated|d0" vdlvm dev evacuate pool0/d0 --to d0
expect_fail nz "no device 'nosuch'" vdlvm dev evacuate pool0/d0 --to d1,nosuch
# d1 alone has no room for d0's extents (the last device with room)
expect_fail nz "holds $on_d0 extents" vdlvm dev evacuate pool0/d0 --to d1
expect_fail nz "rate|size|invalid" vdlvm dev evacuate pool0/d0 --rate lots
expect_fail nz "pool|nopool" vdlvm pool rebalance nopool
expect_fail nz "rate|size|invalid" vdlvm pool rebalance pool0 --rate -3
# removing d0 from the definition while it holds extents: refused, named
cp "$conf" "$tmp/conf.orig"
python3 - "$conf" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
i = lines.index("  - name: d0")
del lines[i:i + 3]
open(sys.argv[1], "w").write("\n".join(lines))
PY
expect_fail nz "'d0'.*vol0|vol0.*'d0'" vdlvm pool apply pool0
cp "$tmp/conf.orig" "$conf"
# a renamed device: a clear error
sed -i 's/name: d2$/name: d2x/' "$conf"
expect_fail nz "d2" vdlvm pool apply pool0
cp "$tmp/conf.orig" "$conf"
after=$(snapshot)
[ "$before" = "$after" ] || fail "bad input changed the pool: $before / $after"
note "bad input refused, nothing changed"

# ---- a fourth device, the load, the evacuation with two kill -9 ----------
printf '  - name: d3\n    path: %s\n    size: 64MiB\n' "$tmp/pool0-d3.img" >> "$conf"
vdlvm pool apply pool0 > "$tmp/apply.out" 2>&1 || fail "pool apply failed: $(cat "$tmp/apply.out")"

start_load() { # N: a verifying write load for up to 30 s
    timeout 60 "$VDLOAD" write --verify "$j" --continue-on-error --io-timeout 5 \
        --reconnect-timeout 1 --bs 4k --qd 8 --time 30 --json --quiet \
        --started "$tmp/started$1" "$url" > "$tmp/load$1.json" 2> "$tmp/load$1.err" &
    load_pid=$!
    cleanup_fn kill_quiet "$load_pid"
    wait_for 30 test -e "$tmp/started$1" || fail "write load $1 did not start"
}
# kill_mid_move N: once at least N moves are done in this tgtd and one is
# under way with bytes copied, kill -9 tgtd; adds its bytes_copied
copied=0 moves=0
kill_mid_move() {
    local i saw=0
    for (( i = 0; i < 200; i++ )); do
        vdlvm status pool0 --json > "$tmp/st.json" 2> /dev/null || true
        saw=$(python3 -c 'import json,sys
m=json.load(open(sys.argv[1]))["move"]
print(1 if m["evacuating"] and m["moves_done"] >= int(sys.argv[2]) and m["active"] and m["done_bytes"] > 0 else
      2 if not m["evacuating"] and not m["active"] else 0)' "$tmp/st.json" "$1" 2> /dev/null || echo 0)
        [ "$saw" = 0 ] || break
        sleep 0.05
    done
    [ "$saw" != 2 ] || fail "the evacuation ended before the kill: $(cat "$tmp/st.json")"
    [ "$saw" = 1 ] || fail "never saw the evacuation in the middle of a move: $(cat "$tmp/st.json")"
    local victim=$tgtd_pid
    kill9_tgtd
    ! kill -0 "$victim" 2> /dev/null || fail "tgtd $victim survived kill -9"
    copied=$(( copied + $(move_field "$tmp/st.json" bytes_copied) ))
    moves=$(( moves + $(move_field "$tmp/st.json" moves_done) ))
    note "tgtd killed with SIGKILL during a move: $(python3 -c 'import json,sys
m=json.load(open(sys.argv[1]))["move"]; print(m["moves_done"], "moves done in this tgtd,", m["bytes_copied"], "bytes copied; extent", m["extent"], "at", m["done_bytes"])' "$tmp/st.json")"
}
after_restart() { # N: the load before the kill, then verify
    wait "$load_pid" || true
    grep -q '"journal_records"' "$tmp/load$1.json" ||
        fail "vdload did not finish: $(cat "$tmp/load$1.json" "$tmp/load$1.err")"
    start_tgtd
    export_vol
    local out
    out=$(timeout 60 "$VDLOAD" verify --journal "$j" "$url") ||
        fail "acknowledged writes lost after kill -9: $out"
    note "after restart $1: $out"
}

start_load 1
vdlvm dev evacuate pool0/d0 --rate 1MiB > "$tmp/e1.out" 2>&1 ||
    fail "evacuate failed: $(cat "$tmp/e1.out")"
grep -q "evacuation started" "$tmp/e1.out" || fail "evacuate: $(cat "$tmp/e1.out")"
kill_mid_move 1
after_restart 1

start_load 2
kill_mid_move 1
after_restart 2

# the evacuation finishes by itself under a load
start_load 3
done_=0
for (( i = 0; i < 600; i++ )); do
    status_json "$tmp/st.json"
    if [ "$(move_field "$tmp/st.json" evacuating)" = None ] &&
        [ "$(move_field "$tmp/st.json" active)" = False ]; then
        done_=1
        break
    fi
    sleep 0.1
done
[ "$done_" = 1 ] || fail "the evacuation did not finish: $(cat "$tmp/st.json")"
copied=$(( copied + $(move_field "$tmp/st.json" bytes_copied) ))
moves=$(( moves + $(move_field "$tmp/st.json" moves_done) ))
kill_quiet "$load_pid"
wait "$load_pid" || true
[ "$(dev_extents "$tmp/st.json" d0)" = 0 ] || fail "d0 still holds extents: $(cat "$tmp/st.json")"
[ "$(move_field "$tmp/st.json" moves_abandoned)" = 0 ] || fail "a move was abandoned: $(cat "$tmp/st.json")"

# The module's log lines of every tgtd of this test: each extent of d0
# started and switched once (a finished extent is never copied again), and
# each interruption resumed the extent in flight from its checkpoint (so at
# most one extent per interruption is copied twice).  The statuses polled
# before the kills lag on a loaded machine, so the logs are the record.
cat "$tmp"/tgtd-*.log > "$tmp/all.log"
grep -o "moving extent [0-9]* leg [0-9]* of volume 'vol0'" "$tmp/all.log" | sort > "$tmp/started"
grep -o "extent [0-9]* leg [0-9]* of volume 'vol0' now on" "$tmp/all.log" | sort > "$tmp/switched"
grep -o "resuming the move of extent [0-9]* .* at [0-9]* bytes" "$tmp/all.log" > "$tmp/resumed" || true
nst=$(wc -l < "$tmp/started") nsw=$(wc -l < "$tmp/switched") nre=$(wc -l < "$tmp/resumed")
[ "$(sort -u "$tmp/started" | wc -l)" = "$nst" ] || fail "an extent was started twice: $(uniq -d "$tmp/started")"
[ "$(sort -u "$tmp/switched" | wc -l)" = "$nsw" ] || fail "an extent was switched twice: $(uniq -d "$tmp/switched")"
[ "$nst" = "$on_d0" ] && [ "$nsw" = "$on_d0" ] || fail "$nst moves started, $nsw switched for $on_d0 extents of d0"
[ "$nre" = 2 ] || fail "$nre resumed moves for 2 interruptions: $(cat "$tmp/resumed")"
note "evacuated $on_d0 extents ($(( on_d0 * EXT )) bytes) through 2 kill -9: each started and switched once; resumed: $(sed 's/.*extent \([0-9]*\) .* at \([0-9]*\) bytes/extent \1 at \2/' "$tmp/resumed" | tr '\n' ';'); the last tgtd copied $(move_field "$tmp/st.json" bytes_copied) bytes and compared $(move_field "$tmp/st.json" bytes_compared)"

out=$(timeout 60 "$VDLOAD" verify --journal "$j" "$url") ||
    fail "acknowledged writes lost: $out"
grep -q " 0 lost, 0 stale, 0 corrupt" <<< "$out" || fail "$out"
note "vdload verify: $out"

# ---- removal: pool apply without d0 ---------------------------------------
python3 - "$conf" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
i = lines.index("  - name: d0")
del lines[i:i + 3]
open(sys.argv[1], "w").write("\n".join(lines))
PY
vdlvm pool apply pool0 > "$tmp/rm.out" 2>&1 || fail "pool apply without d0 failed: $(cat "$tmp/rm.out")"
status_json "$tmp/st.json"
! grep -q '"name":"d0"' "$tmp/st.json" || fail "d0 is still in the pool: $(cat "$tmp/st.json")"
note "d0 removed: $(cat "$tmp/rm.out")"
out=$(timeout 60 "$VDLOAD" verify --journal "$j" "$url") ||
    fail "acknowledged writes lost after the removal: $out"
grep -q " 0 lost, 0 stale, 0 corrupt" <<< "$out" || fail "$out"
note "after the removal, vdload verify: $out"

stop_tgtd
vdlvm -c "$conf" status pool0 --json > "$tmp/st2.json" || fail "status without tgtd failed"
! grep -q '"name":"d0"' "$tmp/st2.json" || fail "d0 is back after tgtd stopped"
note "ok"
