#!/bin/bash
# QoS limits (issue 17) through a real tgtd with bs_vdlvm.so: a volume limited
# to 500 IOPS runs at 450-525 under a qd 32 load asking for more (after its
# 1 s burst, which is measured too); `vdlvm vol set` on the exported volume
# changes the rate at once (1000); the limit survives a tgtd restart; 0
# removes it (rate clearly higher); `vdlvm status --json` shows limits and
# the rate tgtd measures; data written under the limit reads back equal; bad
# values are refused with a message and change nothing.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires_file "$BUILD/vdload"
requires qemu-img --version
requires sh -c 'qemu-img --help | grep -qw iscsi'
requires command -v python3

MiB=$((1024 * 1024))
VDLOAD=$BUILD/vdload
vdload() { timeout 60 "$VDLOAD" "$@"; }

# json_get FILE EXPR: a value of the JSON in FILE (EXPR indexes j).
json_get() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# load SECONDS OUT: 4 KiB random reads at qd 32 for SECONDS; IOPS on stdout.
load() {
    vdload read --bs 4096 --qd 32 --time "$1" --range 0:$((8 * MiB)) --json "$url" > "$2" ||
        fail "vdload failed: $(cat "$2")"
    [ "$(json_get "$2" "j['errors']")" = 0 ] || fail "vdload saw errors: $(cat "$2")"
    json_get "$2" "int(j['total']['iops'])"
}

# steady SECONDS OUT LIMIT: a load run that starts with a full bucket (idle
# longer than the burst): its steady rate is (ios - limit x burst) / seconds,
# on stdout; the raw rate (burst included) is logged.
steady() {
    local raw
    sleep $(python3 -c "print($burst_s + 0.1)")
    raw=$(load "$1" "$2")
    json_get "$2" "int((j['total']['ios'] - $3 * $burst_s) / j['seconds'])"
    note "  raw rate of that run, the $burst_s s burst included: $raw IOPS"
}

# in_range WHAT VALUE LO HI
in_range() {
    [ "$2" -ge "$3" ] && [ "$2" -le "$4" ] || fail "$1: $2, expected $3-$4"
    note "$1: $2 (expected $3-$4)"
}

conf=$(make_pool_conf pool0 2 64MiB 4MiB)
vdlvm pool create "$conf" >/dev/null || fail "pool create failed"
vdlvm vol create pool0/vol0 --size 32MiB >/dev/null || fail "vol create failed"
# Set before the export: tgtd takes it from the pool metadata at bs_open.
vdlvm vol set pool0/vol0 --iops-limit 500 || fail "vol set (offline) failed"

export_vol0() {
    tgt_target_new 1 vol0 || fail "cannot create target"
    tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"
    url=$(iscsi_url 1 1)
}

start_tgtd
export_vol0

# Data written under the limit reads back equal.
random_file "$tmp/in" 4
iscsi_write "$tmp/in" "$url" || fail "qemu-img write to $url failed"
iscsi_read "$url" "$tmp/out" $((4 * MiB)) || fail "qemu-img read from $url failed"
cmp "$tmp/in" "$tmp/out" || fail "data read back differs from data written under the limit"
note "4 MiB written and read back identical under --iops-limit 500"

# Burst: idle for > 1 s, the bucket holds 500 commands: a 1.5 s run gets
# about 500 + 750 commands (833/s); without the burst it would be 500/s.
sleep 1.2
iops=$(load 1.5 "$tmp/burst.json")
in_range "IOPS in the first 1.5 s (burst of 1 s at 500)" "$iops" 650 950

# Steady state: with a shorter burst (0.25 s, set live on the exported
# volume), each run starts with a full bucket of limit x 0.25 commands,
# which steady() subtracts.  (A burst much shorter than that loses tokens
# whenever the loaded test machine stalls vdload or tgtd longer than it.)
# Meanwhile status shows the rate tgtd measures.
burst_s=0.25
vdlvm vol set pool0/vol0 --burst $burst_s >/dev/null || fail "vol set --burst (live) failed"
sleep 0.35
vdload read --bs 4096 --qd 32 --time 4 --range 0:$((8 * MiB)) --json "$url" > "$tmp/l500.json" &
load_pid=$!
sleep 2.5
vdlvm status pool0/vol0 --json > "$tmp/st.json" || fail "status --json failed"
vdlvm status pool0/vol0 > "$tmp/st.txt" || fail "status failed"
wait "$load_pid" || fail "vdload failed: $(cat "$tmp/l500.json")"
note "  raw rate of that run, the $burst_s s burst included: $(json_get "$tmp/l500.json" "int(j['total']['iops'])") IOPS"
iops=$(json_get "$tmp/l500.json" "int((j['total']['ios'] - 500 * $burst_s) / j['seconds'])")
in_range "IOPS at --iops-limit 500" "$iops" 450 525
[ "$(json_get "$tmp/st.json" "j['qos']['limits']['iops']")" = 500 ] ||
    fail "status --json does not show the limit: $(cat "$tmp/st.json")"
rate=$(json_get "$tmp/st.json" "j['qos']['rates']['iops']")
in_range "rate shown by vdlvm status" "$rate" 400 600
grep -q "qos       iops 500" "$tmp/st.txt" || fail "status does not show the limit: $(cat "$tmp/st.txt")"
grep -q "rate      [0-9]* iops" "$tmp/st.txt" || fail "status does not show the rate: $(cat "$tmp/st.txt")"

# Bad values through the live control socket: refused, nothing changed.
for bad in "--iops-limit -5" "--iops-limit 5x" "--bps-limit 10XB" "--burst soon"; do
    rc=0
    # shellcheck disable=SC2086
    vdlvm vol set pool0/vol0 $bad 2> "$tmp/err" || rc=$?
    [ "$rc" = 2 ] || fail "vol set $bad: exit $rc, expected 2"
    grep -q -e "${bad%% *}" "$tmp/err" || fail "vol set $bad: message does not name the option: $(cat "$tmp/err")"
done
vdlvm status pool0/vol0 --json > "$tmp/st.json"
[ "$(json_get "$tmp/st.json" "j['qos']['limits']['iops']")" = 500 ] ||
    fail "a refused vol set changed the limit: $(cat "$tmp/st.json")"
note "bad values refused, limit unchanged"

# Live change on the exported volume: 1000.
vdlvm vol set pool0/vol0 --iops-limit 1000 || fail "vol set (live) failed"
iops=$(steady 4 "$tmp/l1000.json" 1000)
in_range "IOPS after live vol set --iops-limit 1000" "$iops" 900 1050

# Restart: the limit comes back from the pool metadata.
restart_tgtd
export_vol0
iops=$(steady 4 "$tmp/l1000b.json" 1000)
in_range "IOPS at 1000 after a tgtd restart" "$iops" 900 1050

# 0 removes the limit.
vdlvm vol set pool0/vol0 --iops-limit 0 || fail "vol set --iops-limit 0 failed"
iops=$(load 2 "$tmp/l0.json")
[ "$iops" -gt 1500 ] || fail "IOPS without a limit: $iops, expected clearly above the last limit of 1000"
note "IOPS without a limit: $iops"

# A bandwidth limit: 8 MiB/s of 64 KiB reads (128 commands per second).
vdlvm vol set pool0/vol0 --bps-limit 8MiB >/dev/null || fail "vol set --bps-limit failed"
sleep 0.35
vdload read --bs 65536 --qd 8 --time 3 --range 0:$((8 * MiB)) --json "$url" > "$tmp/bps.json" ||
    fail "vdload failed: $(cat "$tmp/bps.json")"
kib=$(json_get "$tmp/bps.json" "int((j['total']['bytes'] - 8 * 2**20 * $burst_s) / j['seconds'] / 1024)")
in_range "KiB/s at --bps-limit 8MiB" "$kib" 7782 8602
vdlvm vol set pool0/vol0 --bps-limit 0 >/dev/null || fail "vol set --bps-limit 0 failed"

iscsi_read "$url" "$tmp/out2" $((4 * MiB)) || fail "qemu-img read after the runs failed"
cmp "$tmp/in" "$tmp/out2" || fail "data differs after the runs"
note "ok"
