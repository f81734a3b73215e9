#!/bin/bash
# Evacuating a mirror leg's device across nodes while that device goes
# silent (issue 12): a 32 MiB 2-leg mirror with one leg on nodeb's LUN (b0)
# and one on nodec's (c0), served by nodea's tgtd with the module; a local
# device a1 on nodea joins with `pool apply`.  `dev evacuate mf/b0 --to a1`
# runs under a verifying write load; in the middle of a move nodeb goes
# silent (netem loss 100% or a blackhole route).  The move fails (it is
# abandoned and the volume keeps its mapping) or waits; the initiator never
# hangs (every write completes within a bound, none fails: the leg on c0
# takes them) and nothing is lost.  With nodeb back and the legs in sync,
# the evacuation runs again to the end: b0 holds nothing, the legs are on
# a1 (nodea) and c0 (nodec), distinct nodes, and every acknowledged write
# reads back, also with nodec silent (the moved leg alone).
# integration: solo
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
mirror_requires

VOL_MIB=32
TIMEOUT_MS=2000
PV=mf/vol

mirror_nodes_setup
mirror_peers_start 160M
mirror_pool_create mf "${TIMEOUT_MS}ms"
mirror_vol_create $PV ${VOL_MIB}MiB
mirror_tgtd_start $PV
j=$tmp/journal
vdload_a write --verify "$j" --pattern seq --bs 256k --qd 8 \
    --count $((VOL_MIB * 4)) --quiet "$url_a" > /dev/null ||
    fail "filling the mirror failed"
wait_in_sync $PV 30

printf '  - name: a1\n    path: %s\n    size: 128MiB\n    node: nodea\n' "$tmp/nodea-a1.img" >> "$conf"
vdlvm_a pool apply mf > "$tmp/apply.out" 2>&1 || fail "pool apply failed: $(cat "$tmp/apply.out")"
# nodea: another leg's node rule: a1 may take b0's leg (c0 is on nodec)
sj() { vdlvm_a status mf --json 2> /dev/null || true; }
mfield() { sj | python3 -c 'import json,sys; print(json.load(sys.stdin)["move"][sys.argv[1]])' "$1"; }
dev_extents() { sj | python3 -c 'import json,sys
d=json.load(sys.stdin); print([x["used_extents"] for x in d["devices"] if x["name"]==sys.argv[1]][0])' "$1"; }
on_b0=$(dev_extents b0)
note "legs $(mirror_legs $PV); b0 holds $on_b0 extents; a1 added"

load() { # NAME SECONDS
    ip netns exec "$NS_A" timeout 120 "$VDLOAD" write --verify "$j" --continue-on-error \
        --io-timeout 30 --bs 4k --qd 8 --time "$2" --json --quiet \
        --started "$tmp/$1.started" "$url_a" > "$tmp/$1.json" 2> "$tmp/$1.err" &
    load_pid=$!
    cleanup_fn kill_quiet "$load_pid"
    wait_started "$tmp/$1.started" "$load_pid" || fail "$1: the load did not start: $(cat "$tmp/$1.err")"
}
maxlat_ms() { grep -o '"write":{[^}]*}' "$1" | grep -o '"max":[0-9.]*' | awk -F: '{ printf "%.0f", $2 / 1000 }'; }

# ---- nodeb silent in the middle of a move of b0's extent ---------------
load silent 12
vdlvm_a dev evacuate mf/b0 --to a1 --rate 8MiB > "$tmp/e1.out" 2>&1 ||
    fail "evacuate failed: $(cat "$tmp/e1.out")"
saw=0
for (( i = 0; i < 300; i++ )); do
    if sj | python3 -c 'import json,sys
m=json.load(sys.stdin)["move"]; sys.exit(0 if m["active"] and m["done_bytes"] > 0 else 1)' 2> /dev/null; then
        saw=1
        break
    fi
    sleep 0.05
done
[ "$saw" = 1 ] || fail "never saw a move of b0's extent under way: $(sj)"
t0=$(now)
node_silent b || fail "cannot silence nodeb"
note "nodeb silent mid-move: $silent_how"
# the move fails (abandoned, the mapping kept) or waits; status answers
stopped=0
for (( i = 0; i < 300; i++ )); do
    s=$(sj)
    if [ -n "$s" ] && python3 -c 'import json,sys
m=json.load(sys.stdin)["move"]; sys.exit(0 if not m["active"] and m["evacuating"] is None else 1)' <<< "$s"; then
        stopped=1
        break
    fi
    sleep 0.1
done
wait "$load_pid" || fail "the write load failed: $(cat "$tmp/silent.err")"
errs=$(vdload_errors "$tmp/silent.json")
ml=$(maxlat_ms "$tmp/silent.json")
note "load with nodeb silent mid-move: $errs; slowest write $ml ms (device timeout $TIMEOUT_MS ms)"
[ "$errs" = "errors 0 timeouts 0 cancelled 0 in_doubt 0" ] ||
    fail "writes failed while nodeb was silent mid-move: $(cat "$tmp/silent.json")"
[ "$ml" -le $(( 4 * TIMEOUT_MS + 2000 )) ] || fail "a write took $ml ms: the initiator waited too long"
s=$(sj)
if [ "$stopped" = 1 ]; then
    note "the move was abandoned after $(elapsed "$t0" "$(now)") s: $(python3 -c 'import json,sys; m=json.load(sys.stdin)["move"]; print(m["moves_abandoned"], "abandoned:", m["error"])' <<< "$s")"
    [ "$(mfield moves_abandoned)" -ge 1 ] || fail "the evacuation stopped without an abandoned move: $s"
else
    note "the move waits for nodeb: $(python3 -c 'import json,sys; print(json.load(sys.stdin)["move"])' <<< "$s")"
fi
[ "$(leg_state $PV b0)" = failed ] || note "leg b0 state: $(leg_state $PV b0)"
out=$(vdload_a verify --journal "$j" "$url_a") || fail "acknowledged writes lost with nodeb silent: $out"
note "nodeb silent: $out"

# ---- nodeb back: in sync, the evacuation again, to the end ---------------
node_restore b
wait_in_sync $PV 60
load again 8
rc=0
vdlvm_a dev evacuate mf/b0 --to a1 --wait > "$tmp/e2.out" 2>&1 || rc=$?
wait "$load_pid" || fail "the write load failed: $(cat "$tmp/again.err")"
[ "$rc" = 0 ] || fail "evacuate --wait exited $rc: $(cat "$tmp/e2.out")"
errs=$(vdload_errors "$tmp/again.json")
[ "$errs" = "errors 0 timeouts 0 cancelled 0 in_doubt 0" ] ||
    fail "writes failed during the evacuation: $(cat "$tmp/again.json")"
[ "$(dev_extents b0)" = 0 ] || fail "b0 still holds extents: $(sj)"
legs=$(mirror_legs $PV)
[ "$legs" = "a1:nodea c0:nodec" ] || [ "$legs" = "c0:nodec a1:nodea" ] ||
    fail "legs after the evacuation: $legs"
wait_in_sync $PV 30
note "evacuated: legs $legs; $(tail -1 "$tmp/e2.out")"
out=$(vdload_a verify --journal "$j" "$url_a") || fail "acknowledged writes lost: $out"
note "after the evacuation: $out"
# the moved leg alone serves every acknowledged write
node_silent c || fail "cannot silence nodec"
out=$(vdload_a verify --journal "$j" "$url_a") || fail "the leg on a1 alone: $out"
grep -q "$((VOL_MIB * MiB / 512)) blocks checked" <<< "$out" || fail "verify did not check the whole volume: $out"
note "leg on a1 alone (nodec silent): $out"
node_restore c
note "ok"
