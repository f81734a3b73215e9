#!/bin/bash
# Progress of long commands that run inside the tgtd holding the pool
# (issue 15), and the move progress in stats:
#   1. vol import through tgtd, held after its first buffer by the test
#      hook (VDLVM_TEST_IMPORT_HOLD): `stats --json` lists the job (object,
#      bytes done of the image's size), `stats` draws its bar, the
#      Prometheus form has vdlvm_job_size_bytes and passes promtool; the
#      client writes one line per step to its log while the import runs
#      (not all at once at the end), 100 % once (tgtd draws nothing
#      itself), then "done"; the job is gone after; the data reads back;
#   2. the same import on a terminal (script's pty): a bar redrawn in place;
#   3. vol repair --wait (a rebuild at 8 MiB/s) through tgtd into a log:
#      step lines, no carriage return, the end line;
#   4. dev evacuate at 2 MiB/s: `stats --json` "move" shows the evacuation
#      (bytes done of total), `stats` its bar, --prometheus
#      vdlvm_pool_move_running{job="evacuate"} 1 and passes promtool.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/thin-common.sh"
thin_requires
requires command -v promtool
requires command -v python3
requires command -v script

conf=$(make_pool_conf pool0 3 96MiB 4MiB)
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
vdlvm vol create pool0/vol0 --size 8MiB > /dev/null || fail "vol create failed"
img=$tmp/img
hd=$tmp/hold
mkdir -p "$img" "$hd"
export VDLVM_TEST_IMPORT_HOLD=$hd # before tgtd starts: its imports see it
qemu-img create -q -f raw "$img/a.raw" 32M
qemu-io -f raw -c "write -P 0x5a 0 8M" -c "write -P 0xa5 16M 8M" "$img/a.raw" > /dev/null ||
    fail "cannot write a.raw"
start_tgtd
tgt_target_new 1 jobs || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"

# pyjson FILE EXPR: EXPR evaluated with d = the JSON document of FILE.
pyjson() {
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}

# ---- 1. import through tgtd, into a log ----------------------------------------
touch "$hd/hold"
"$VDLVM" vol import pool0/j "$img/a.raw" > "$tmp/imp.out" 2> "$tmp/imp.err" &
ipid=$!
cleanup_fn kill_quiet "$ipid"
wait_for 30 test -e "$hd/held" || fail "the import did not reach the hold: $(cat "$tmp/imp.err")"
vdlvm stats pool0 --json > "$tmp/j1.json" || fail "stats --json failed"
got=$(pyjson "$tmp/j1.json" '[(j["job"], j["object"], j["total_bytes"], j["done_bytes"] <= j["total_bytes"]) for j in d["jobs"]]')
[ "$got" = "[('import', 'pool0/j', $((32 * MiB)), True)]" ] ||
    fail "stats --json jobs while the import runs: $got: $(cat "$tmp/j1.json")"
vdlvm stats pool0 > "$tmp/j1.txt" || fail "stats failed"
grep -Eq '^  import pool0/j: \[[#.]+\] +[0-9]+%  .* of 32MiB' "$tmp/j1.txt" ||
    fail "stats shows no bar for the import: $(cat "$tmp/j1.txt")"
vdlvm stats pool0 --prometheus > "$tmp/j1.prom" || fail "stats --prometheus failed"
promtool check metrics < "$tmp/j1.prom" > "$tmp/promtool.out" 2>&1 ||
    fail "promtool rejects the exposition: $(cat "$tmp/promtool.out")"
grep -qx "vdlvm_job_size_bytes{pool=\"pool0\",object=\"pool0/j\",job=\"import\"} $((32 * MiB))" "$tmp/j1.prom" ||
    fail "no vdlvm_job_size_bytes for the import: $(grep vdlvm_job "$tmp/j1.prom")"
# the client's first step line comes while the import still runs
wait_for 10 grep -q '^import pool0/j: ' "$tmp/imp.err" ||
    fail "no progress line while the import runs: $(cat "$tmp/imp.err")"
kill -0 "$ipid" 2>/dev/null || fail "the import ended while held"
rm -f "$hd/hold"
wait "$ipid" || fail "import through tgtd failed: $(cat "$tmp/imp.err")"
! grep -q $'\r' "$tmp/imp.err" || fail "progress in a log has carriage returns: $(cat -v "$tmp/imp.err")"
steps=$(grep -Ec '^import pool0/j: +[0-9]+%' "$tmp/imp.err" || true)
[ "$steps" -ge 2 ] || fail "import progress in a log: $steps step lines: $(cat "$tmp/imp.err")"
full=$(grep -Ec '^import pool0/j: +100%' "$tmp/imp.err" || true)
[ "$full" = 1 ] || fail "the 100 % line is there $full times (drawn by tgtd too?): $(cat "$tmp/imp.err")"
grep -q '^import pool0/j: done' "$tmp/imp.err" || fail "no end line: $(cat "$tmp/imp.err")"
vdlvm stats pool0 --json > "$tmp/j2.json" || fail "stats --json failed"
[ "$(pyjson "$tmp/j2.json" 'd["jobs"]')" = "[]" ] || fail "a job left after the import: $(cat "$tmp/j2.json")"
vdlvm vol export pool0/j "$img/j.raw" > /dev/null 2> "$tmp/exp.err" || fail "export failed: $(cat "$tmp/exp.err")"
cmp -s "$img/a.raw" "$img/j.raw" || fail "pool0/j differs from a.raw"
note "import through tgtd into a log: $steps step lines while it ran; data equal"

# ---- 2. import through tgtd on a terminal --------------------------------------
rm -f "$hd/held"
touch "$hd/hold"
SHELL=/bin/sh timeout 120 script -qec "$VDLVM vol import pool0/j2 $img/a.raw" /dev/null > "$tmp/bar.out" 2>&1 &
spid=$!
cleanup_fn kill_quiet "$spid"
wait_for 30 test -e "$hd/held" || fail "the import on a terminal did not reach the hold: $(cat -v "$tmp/bar.out")"
wait_for 10 grep -q $'\rimport pool0/j2: \[' "$tmp/bar.out" ||
    fail "no bar redrawn in place while the import runs: $(cat -v "$tmp/bar.out")"
rm -f "$hd/hold"
wait "$spid" || fail "import on a terminal failed: $(cat -v "$tmp/bar.out")"
grep -q 'import pool0/j2: done' "$tmp/bar.out" || fail "no end line on the terminal: $(cat -v "$tmp/bar.out")"
note "import through tgtd on a terminal: $(grep -o $'\r' "$tmp/bar.out" | wc -l) redraws"

# ---- 3. vol repair --wait through tgtd, into a log -----------------------------
vdlvm vol create pool0/m0 --size 24MiB --layout mirror --allow-same-node > /dev/null ||
    fail "mirror create failed"
vdlvm resync pool0/m0 --rate 8MiB > /dev/null || fail "resync --rate failed"
read -r from to < <(vdlvm status pool0/m0 --json | python3 -c '
import json, sys
legs = [l["device"] for l in json.load(sys.stdin)["legs"]]
print(legs[1], [d for d in ("d0", "d1", "d2") if d not in legs][0])') ||
    fail "cannot read the legs of pool0/m0"
"$VDLVM" vol repair pool0/m0 --replace "$from" --with "$to" --wait > "$tmp/rep.out" 2> "$tmp/rep.err" ||
    fail "vol repair --wait failed: $(cat "$tmp/rep.err")"
grep -q "moved to '$to' and rebuilt" "$tmp/rep.out" || fail "repair result missing: $(cat "$tmp/rep.out")"
! grep -q $'\r' "$tmp/rep.err" || fail "progress in a log has carriage returns"
steps=$(grep -Ec '^rebuild pool0/m0: +[0-9]+%' "$tmp/rep.err" || true)
[ "$steps" -ge 3 ] || fail "rebuild progress in a log: $steps step lines: $(cat "$tmp/rep.err")"
grep -q '^rebuild pool0/m0: done' "$tmp/rep.err" || fail "no end line: $(cat "$tmp/rep.err")"
note "vol repair --wait through tgtd into a log: $steps step lines"

# ---- 4. an evacuation in stats ---------------------------------------------------
vdlvm stats pool0 --json > "$tmp/e0.json" || fail "stats --json failed"
dev=$(pyjson "$tmp/e0.json" 'max(d["devices"], key=lambda x: x["used"])["device"]')
[ "$(pyjson "$tmp/e0.json" 'd["move"]["evacuate"]')" = None ] || fail "an evacuation before any: $(cat "$tmp/e0.json")"
vdlvm dev evacuate "pool0/$dev" --rate 2MiB > /dev/null || fail "dev evacuate failed"
seen=0
for (( i = 0; i < 100; i++ )); do
    vdlvm stats pool0 --json > "$tmp/e1.json" || fail "stats --json failed"
    if [ "$(pyjson "$tmp/e1.json" 'd["move"]["evacuate"] is not None and d["move"]["evacuate"]["total_bytes"] > 0')" = True ]; then
        seen=1
        break
    fi
    sleep 0.1
done
[ "$seen" = 1 ] || fail "stats --json never showed the evacuation: $(cat "$tmp/e1.json")"
[ "$(pyjson "$tmp/e1.json" 'd["move"]["evacuate"]["device"]')" = "$dev" ] || fail "evacuating the wrong device"
vdlvm stats pool0 > "$tmp/e1.txt" || fail "stats failed"
grep -Eq "^  evacuate '$dev': \[[#.]+\] +[0-9]+%  " "$tmp/e1.txt" || fail "stats shows no evacuation bar: $(cat "$tmp/e1.txt")"
vdlvm stats pool0 --prometheus > "$tmp/e1.prom" || fail "stats --prometheus failed"
promtool check metrics < "$tmp/e1.prom" > "$tmp/promtool.out" 2>&1 ||
    fail "promtool rejects the exposition: $(cat "$tmp/promtool.out")"
grep -qx 'vdlvm_pool_move_running{pool="pool0",job="evacuate"} 1' "$tmp/e1.prom" ||
    fail "vdlvm_pool_move_running is not 1: $(grep vdlvm_pool_move "$tmp/e1.prom")"
grep -Eq '^vdlvm_pool_move_size_bytes\{pool="pool0",job="evacuate"\} [1-9]' "$tmp/e1.prom" ||
    fail "no size of the evacuation: $(grep vdlvm_pool_move "$tmp/e1.prom")"
note "evacuation of $dev in stats: $(grep "evacuate '" "$tmp/e1.txt")"
