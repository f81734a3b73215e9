#!/bin/bash
# Live evacuation (issue 12): tgtd exports vol0 of a 3-device pool, a fourth
# device joins with `vdlvm pool apply`, and while a qemu-io write load runs
# on vol0, `vdlvm dev evacuate pool0/d0 --wait` moves
# every extent off d0 through the module's control socket.  Afterwards every
# write the load had acknowledged reads back, and d0 holds no extent
# (`vdlvm status --json`); the status showed the move while it ran.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires qemu-io --version
requires python3 --version

MiB=$((1024 * 1024))
conf=$(make_pool_conf pool0 3 64MiB 4MiB)
vdlvm pool create "$conf" || fail "pool create failed"
vdlvm vol create pool0/vol0 --size 48MiB || fail "vol create failed"

start_tgtd
tgt_target_new 1 pool0 || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"
url=$(iscsi_url 1 1)
wait_for 10 test -S "$VDLVM_RUNDIR/pool0.sock" || fail "no control socket"

# Base data: slot s (1 MiB at s MiB) holds pattern 1 + s.
for s in $(seq 0 47); do echo $((1 + s)); done > "$tmp/pat"
cmds=()
for s in $(seq 0 47); do cmds+=(-c "write -P $((1 + s)) ${s}M 1M"); done
timeout 60 qemu-io -f raw "${cmds[@]}" "$url" > /dev/null || fail "base write failed"
on_d0=$(vdlvm status pool0 --json | python3 -c 'import json,sys
d=json.load(sys.stdin); print([x["used_extents"] for x in d["devices"] if x["name"]=="d0"][0])')
[ "$on_d0" -gt 0 ] || fail "d0 holds no extent before the evacuation"

# A fourth device joins the live pool through `pool apply` (the YAML is the
# definition): --dry-run plans it and changes nothing; then it is added.
printf '  - name: d3\n    path: %s\n    size: 64MiB\n' "$tmp/pool0-d3.img" >> "$conf"
vdlvm pool apply pool0 --dry-run > "$tmp/plan.out" 2>&1 || fail "pool apply --dry-run failed: $(cat "$tmp/plan.out")"
grep -q "add device 'd3'" "$tmp/plan.out" || fail "no plan for d3: $(cat "$tmp/plan.out")"
[ ! -e "$tmp/pool0-d3.img" ] || fail "--dry-run created d3"
vdlvm pool apply pool0 > "$tmp/apply.out" || fail "pool apply failed: $(cat "$tmp/apply.out")"
vdlvm status pool0 --json | grep -q '"name":"d3"' || fail "d3 is not in the pool after pool apply"
expect_fail 1 "no device 'nosuch'" vdlvm dev evacuate pool0/nosuch --wait
note "d3 added live with pool apply"

# The write load: slot s gets pattern 100 + round, round after round; a
# write is logged (slot pattern) only once qemu-io acknowledged it.
(
    for round in $(seq 0 40); do
        [ -e "$tmp/stop" ] && exit 0
        for s in $(seq $((round % 3)) 3 47); do
            p=$(( (100 + round + s) % 250 + 1 ))
            if timeout 30 qemu-io -f raw -c "write -P $p ${s}M 1M" "$url" > /dev/null; then
                echo "$s $p" >> "$tmp/acked"
            else
                echo "write of slot $s failed" > "$tmp/io-error"
                exit 1
            fi
        done
        touch "$tmp/round-$round"
    done
) &
io_pid=$!
cleanup_fn kill_quiet "$io_pid"
wait_for 60 test -e "$tmp/round-0" || fail "the write load did not get going"

# Slow enough that status can see it (4 MiB extents at 16 MiB/s).
start=$(date +%s.%N)
vdlvm dev evacuate pool0/d0 --rate 16MiB --wait > "$tmp/evac.out" 2>&1 &
ev_pid=$!
cleanup_fn kill_quiet "$ev_pid"
saw=0
for i in $(seq 1 100); do
    if vdlvm status pool0 2> /dev/null | grep -q "evacuating 'd0'"; then saw=1; break; fi
    kill -0 "$ev_pid" 2> /dev/null || break
    sleep 0.1
done
rc=0
wait "$ev_pid" || rc=$?
end=$(date +%s.%N)
[ "$rc" = 0 ] || fail "dev evacuate exited $rc: $(cat "$tmp/evac.out")"
grep -q "evacuated, it holds no extent" "$tmp/evac.out" ||
    fail "no final line: $(cat "$tmp/evac.out")"
grep -q "^evacuate pool0/d0: .*%" "$tmp/evac.out" ||
    fail "no progress lines: $(cat "$tmp/evac.out")"
[ "$saw" = 1 ] || fail "vdlvm status never showed the evacuation"
note "evacuated $on_d0 extents of 4 MiB in $(echo "$end - $start" | bc) s (rate limit 16 MiB/s)"

touch "$tmp/stop"
rc=0
wait "$io_pid" || rc=$?
[ ! -e "$tmp/io-error" ] || fail "write load: $(cat "$tmp/io-error")"
[ "$rc" = 0 ] || fail "write load exited $rc"
[ -s "$tmp/acked" ] || fail "the write load acknowledged nothing"
note "$(wc -l < "$tmp/acked") writes of 1 MiB acknowledged during the evacuation"

# d0 holds nothing; the move is over.
vdlvm status pool0 --json > "$tmp/st.json" || fail "status --json failed"
python3 - "$tmp/st.json" <<'PY' || fail "status after the evacuation: $(cat "$tmp/st.json")"
import json, sys
d = json.load(open(sys.argv[1]))
d0 = [x for x in d["devices"] if x["name"] == "d0"][0]
assert d0["used_extents"] == 0, d0
assert d["move"]["active"] is False and d["move"]["evacuating"] is None, d["move"]
assert d["move"]["moves_abandoned"] == 0, d["move"]
PY

# Every slot holds its last acknowledged pattern.
python3 - "$tmp/pat" "$tmp/acked" > "$tmp/expect" <<'PY'
import sys
pat = [int(l) for l in open(sys.argv[1])]
for l in open(sys.argv[2]):
    s, p = map(int, l.split())
    pat[s] = p
for s, p in enumerate(pat):
    print(s, p)
PY
cmds=()
while read -r s p; do cmds+=(-c "read -P $p ${s}M 1M"); done < "$tmp/expect"
timeout 60 qemu-io -f raw "${cmds[@]}" "$url" > "$tmp/verify.out" 2>&1 ||
    fail "read back failed: $(tail -5 "$tmp/verify.out")"
! grep -qi "fail" "$tmp/verify.out" ||
    fail "data differs after the evacuation: $(grep -i fail "$tmp/verify.out" | head -3)"
note "all 48 slots read back with their last acknowledged data"

# The new mapping is durable.
stop_tgtd
vdlvm -c "$conf" status pool0 --json | python3 -c 'import json,sys
d=json.load(sys.stdin); assert [x["used_extents"] for x in d["devices"] if x["name"]=="d0"][0]==0' ||
    fail "d0 holds extents again after tgtd stopped"
note "ok"
