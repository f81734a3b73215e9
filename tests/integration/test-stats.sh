#!/bin/bash
# vdlvm stats: the counters of a LUN under a known load are real.  N reads
# and M writes of known sizes through iSCSI (qemu-io) show up in `vdlvm
# stats --json` of the tgtd exporting the volume (counts at least N and M,
# bytes exactly what was transferred, one histogram entry per command),
# `--prometheus` passes promtool with the same numbers, and with tgtd gone
# stats shows the offline part and says the volumes are not exported.
# Device counters: a pool whose device is a remote LUN (a stock tgtd in a
# network namespace of its own); with the link down, writes fail and
# vdlvm_device_errors_total{op="write"} rises; when the link comes back
# the device reconnects and vdlvm_device_reconnects_total rises.  A local
# device missing when tgtd opens its pool counts its return as a reconnect.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v qemu-io
requires sh -c 'qemu-io --help | grep -q iscsi || qemu-img --help | grep -qw iscsi'
requires command -v promtool
requires command -v python3

KiB=1024
conf=$(make_pool_conf pool0 3 64MiB 4MiB)
vdlvm pool create "$conf" >/dev/null || fail "pool create failed"
vdlvm vol create pool0/vol0 --size 16MiB >/dev/null || fail "vol create failed"
vdlvm vol create pool0/thin0 --size 32MiB --thin >/dev/null || fail "thin vol create failed"

# vol create / vol remove in an activated pool keep its activation paths.
vdlvm activate pool0 >/dev/null || fail "activate failed"
vdlvm vol create pool0/tmp0 --size 4MiB > "$tmp/create.out" || fail "vol create tmp0 failed"
[ -f "$VDLVM_RUNDIR/vol/pool0/tmp0" ] || fail "vol create in an activated pool did not activate: $(cat "$tmp/create.out")"
vdlvm vol remove pool0/tmp0 >/dev/null || fail "vol remove tmp0 failed"
[ ! -e "$VDLVM_RUNDIR/vol/pool0/tmp0" ] || fail "vol remove left the activation path"
vdlvm deactivate pool0 >/dev/null || fail "deactivate failed"
vdlvm vol create pool0/tmp1 --size 4MiB >/dev/null || fail "vol create tmp1 failed"
[ ! -e "$VDLVM_RUNDIR/vol/pool0" ] || fail "vol create activated a pool that is not activated"
vdlvm vol remove pool0/tmp1 >/dev/null || fail "vol remove tmp1 failed"

start_tgtd
tgt_target_new 1 vol0 || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/vol0 || fail "cannot export pool0/vol0"
tgt_lun_new 1 2 vdlvm pool0/thin0 || fail "cannot export pool0/thin0"
url=$(iscsi_url 1 1)
turl=$(iscsi_url 1 2)

# jget FILE VOL KEY: io.KEY of volume VOL in a stats --json document.
jget() {
    python3 - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
vol = [v for v in doc["volumes"] if v["volume"] == sys.argv[2]][0]
v = vol
for k in sys.argv[3].split("."):
    v = v[k] if not isinstance(v, list) else v[int(k)]
print(sum(v) if isinstance(v, list) else v)
PY
}

vdlvm stats pool0 --json > "$tmp/s0.json" || fail "stats --json failed"
[ "$(jget "$tmp/s0.json" vol0 exported)" = True ] || fail "vol0 not exported: $(cat "$tmp/s0.json")"
r0=$(jget "$tmp/s0.json" vol0 io.reads); rb0=$(jget "$tmp/s0.json" vol0 io.read_bytes)
w0=$(jget "$tmp/s0.json" vol0 io.writes); wb0=$(jget "$tmp/s0.json" vol0 io.write_bytes)

# A known load: NW writes of 64 KiB and NB writes of 512 KiB (beyond the
# inline path's 64 KiB: served by the workers), then as many reads.
NW=40 NB=8
cmds=()
for (( i=0; i<NW; i++ )); do cmds+=(-c "write -P 0x5a $((i * 64 * KiB)) 64k"); done
for (( i=0; i<NB; i++ )); do cmds+=(-c "write -P 0xa5 $((4096 * KiB + i * 512 * KiB)) 512k"); done
timeout 60 qemu-io -f raw "${cmds[@]}" "$url" >/dev/null || fail "qemu-io writes failed"
cmds=()
for (( i=0; i<NW; i++ )); do cmds+=(-c "read -P 0x5a $((i * 64 * KiB)) 64k"); done
for (( i=0; i<NB; i++ )); do cmds+=(-c "read -P 0xa5 $((4096 * KiB + i * 512 * KiB)) 512k"); done
out=$(timeout 60 qemu-io -f raw "${cmds[@]}" "$url") || fail "qemu-io reads failed"
# -P checks the pattern: qemu-io says so on a mismatch.
! grep -qi "pattern verification failed" <<<"$out" || fail "data read back differs: $out"
bytes=$(( NW * 64 * KiB + NB * 512 * KiB ))
ncmd=$(( NW + NB ))
# The thin volume: 3 chunks written.
timeout 60 qemu-io -f raw -c "write -P 1 0 192k" "$turl" >/dev/null || fail "qemu-io thin write failed"

vdlvm stats pool0 --json > "$tmp/s1.json" || fail "stats --json failed"
r1=$(jget "$tmp/s1.json" vol0 io.reads); rb1=$(jget "$tmp/s1.json" vol0 io.read_bytes)
w1=$(jget "$tmp/s1.json" vol0 io.writes); wb1=$(jget "$tmp/s1.json" vol0 io.write_bytes)
note "vol0: reads $r0 -> $r1 ($rb0 -> $rb1 bytes), writes $w0 -> $w1 ($wb0 -> $wb1 bytes); load: $ncmd of each, $bytes bytes"
[ $(( r1 - r0 )) -ge "$ncmd" ] || fail "reads counted $(( r1 - r0 )), expected at least $ncmd"
[ $(( w1 - w0 )) -ge "$ncmd" ] || fail "writes counted $(( w1 - w0 )), expected at least $ncmd"
[ $(( rb1 - rb0 )) = "$bytes" ] || fail "read bytes counted $(( rb1 - rb0 )), expected $bytes"
[ $(( wb1 - wb0 )) = "$bytes" ] || fail "write bytes counted $(( wb1 - wb0 )), expected $bytes"
[ "$(jget "$tmp/s1.json" vol0 io.latency.read.buckets)" = "$r1" ] ||
    fail "read latency histogram holds $(jget "$tmp/s1.json" vol0 io.latency.read.buckets) entries, reads $r1"
[ "$(jget "$tmp/s1.json" vol0 io.errors.read)" = 0 ] || fail "read errors counted"
[ "$(jget "$tmp/s1.json" thin0 io.write_bytes)" = $((192 * KiB)) ] || fail "thin0 write bytes wrong"
[ "$(jget "$tmp/s1.json" thin0 allocated_chunks)" = 3 ] ||
    fail "thin0 allocated chunks $(jget "$tmp/s1.json" thin0 allocated_chunks), expected 3"

vdlvm stats --prometheus > "$tmp/metrics.txt" || fail "stats --prometheus failed"
promtool check metrics < "$tmp/metrics.txt" || fail "promtool rejects the exposition: $(cat "$tmp/metrics.txt")"
grep -qx "vdlvm_volume_read_bytes_total{pool=\"pool0\",volume=\"vol0\"} $rb1" "$tmp/metrics.txt" ||
    fail "read bytes differ between --json and --prometheus: $(grep read_bytes "$tmp/metrics.txt")"
grep -qx "vdlvm_volume_io_latency_seconds_count{pool=\"pool0\",volume=\"vol0\",op=\"read\"} $r1" "$tmp/metrics.txt" ||
    fail "histogram count is not the read count"
grep -qx "vdlvm_volume_io_latency_seconds_bucket{pool=\"pool0\",volume=\"vol0\",op=\"read\",le=\"+Inf\"} $r1" "$tmp/metrics.txt" ||
    fail "+Inf bucket is not the read count"
note "promtool: ok; $(grep -c '^vdlvm_' "$tmp/metrics.txt") samples"

# Progress: a rebuild limited to 8 MiB/s runs in this tgtd; `resync
# --wait` on a terminal (script's pty) draws a bar with rate and time left
# while it runs, redrawn in place, and ends with the result.
vdlvm vol create pool0/m0 --size 24MiB --layout mirror --allow-same-node >/dev/null ||
    fail "mirror create failed"
vdlvm resync pool0/m0 --rate 8MiB >/dev/null || fail "resync --rate failed"
# The leg to move (leg 1's device) and the device holding none.
read -r from to < <(vdlvm status pool0/m0 --json | python3 -c '
import json, sys
legs = [l["device"] for l in json.load(sys.stdin)["legs"]]
print(legs[1], [d for d in ("d0", "d1", "d2") if d not in legs][0])') ||
    fail "cannot read the legs of pool0/m0"
vdlvm vol repair pool0/m0 --replace "$from" --with "$to" >/dev/null || fail "vol repair failed"
vdlvm status pool0/m0 > "$tmp/m0.status" || fail "status failed"
grep -Eq '\[#*\.+\] +[0-9]+%  .* of 24MiB' "$tmp/m0.status" ||
    fail "status shows no bar for the running rebuild: $(cat "$tmp/m0.status")"
SHELL=/bin/sh timeout 60 script -qec "$VDLVM resync pool0/m0 --wait" /dev/null > "$tmp/bar.out" 2>&1 ||
    fail "resync --wait failed: $(cat "$tmp/bar.out")"
grep -q $'\rresync pool0/m0: \[' "$tmp/bar.out" || fail "no bar redrawn in place: $(cat -v "$tmp/bar.out")"
grep -Eq '[0-9]MiB/s  [0-9]+:[0-9]{2} left' "$tmp/bar.out" || fail "no rate and time left: $(cat -v "$tmp/bar.out")"
grep -q "resync done, legs in-sync" "$tmp/bar.out" || fail "no result line: $(cat -v "$tmp/bar.out")"
note "resync --wait on a terminal: $(grep -o $'\r' "$tmp/bar.out" | wc -l) redraws"

# A refused combination changes nothing and says why.
expect_fail 2 "not both" vdlvm stats pool0 --json --prometheus

# Offline: no tgtd holds the pool.
stop_tgtd "$tgtd_ctl" "$tgtd_pid" "$tgtd_log"
vdlvm stats pool0 > "$tmp/off.txt" || fail "stats without tgtd failed"
grep -q "not exported" "$tmp/off.txt" || fail "offline stats does not say the volumes are not exported: $(cat "$tmp/off.txt")"
vdlvm stats pool0 --json > "$tmp/off.json" || fail "stats --json without tgtd failed"
[ "$(jget "$tmp/off.json" thin0 allocated_chunks)" = 3 ] || fail "offline thin usage wrong"
[ "$(jget "$tmp/off.json" vol0 io)" = None ] || fail "offline stats shows I/O counters"
vdlvm stats pool0 --prometheus | promtool check metrics || fail "offline exposition rejected by promtool"
# Without tgtd, a long command's progress in a log: one line per step.
vdlvm vol repair pool0/m0 --replace "$to" --with "$from" --wait > "$tmp/repair.out" 2> "$tmp/repair.err" ||
    fail "vol repair --wait failed: $(cat "$tmp/repair.err")"
grep -q "moved to '$from' and rebuilt" "$tmp/repair.out" || fail "repair result missing: $(cat "$tmp/repair.out")"
! grep -q $'\r' "$tmp/repair.err" || fail "progress in a log has carriage returns"
note "vol repair --wait to a file: $(grep -c '^rebuild pool0/m0: ' "$tmp/repair.err" || true) progress lines"

# ---- device errors and reconnects ---------------------------------------------
netns_setup_pair
A=$netns_a B=$netns_b
vdlvm_a() { ip netns exec "$A" timeout 120 "$VDLVM" "$@"; }
start_tgtd --netns "$B" --addr "$netns_b_addr" --no-module
truncate -s 64M "$tmp/nodeb-disk.img"
tgt_target_new 1 nodeb || fail "nodeb: cannot create target"
tgt_lun_new 1 1 rdwr "$tmp/nodeb-disk.img" || fail "nodeb: cannot export its disk"
url_b=$(iscsi_url 1 1)
rconf=$tmp/rp.yaml
cat > "$rconf" <<EOF
pool: rp
extent_size: 4MiB
devices:
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: 2000ms
EOF
vdlvm_a pool create "$rconf" >/dev/null || fail "pool create with a remote device failed"
vdlvm_a -c "$rconf" vol create rp/vol --size 16MiB >/dev/null || fail "remote vol create failed"
start_tgtd --netns "$A" --addr "$netns_a_addr"
tgt_target_new 1 rvol || fail "nodea: cannot create target"
tgt_lun_new 1 1 vdlvm rp/vol "conf=$rconf" || fail "nodea: cannot export rp/vol"
rurl=$(iscsi_url 1 1)
# dev_counter KEY: errors.read|errors.write|errors.flush|reconnects of b0.
dev_counter() {
    vdlvm_a -c "$rconf" stats rp --json | python3 -c '
import json, sys
d = [d for d in json.load(sys.stdin)["devices"] if d["device"] == "b0"][0]
for k in sys.argv[1].split("."):
    d = d[k]
print(d)' "$1"
}
# probe: one 64 KiB write through the LUN; 0 when it succeeded.
probe() {
    local out rc=0
    out=$(ip netns exec "$A" timeout 60 qemu-io -f raw -c "write -P 0x3c 0 64k" "$rurl" 2>&1) || rc=$?
    [ "$rc" = 0 ] && ! grep -q "failed" <<<"$out"
}
probe || fail "a write to the remote volume failed before the fault"
[ "$(dev_counter errors.write)" = 0 ] || fail "write errors counted before the fault"
[ "$(dev_counter reconnects)" = 0 ] || fail "reconnects counted before the fault"
netns_link_down
! probe || fail "a write succeeded with the remote device's link down"
we=$(dev_counter errors.write)
[ "$we" -ge 1 ] || fail "the failed write was not counted: errors.write $we"
vdlvm_a -c "$rconf" stats rp > "$tmp/rp.txt" || fail "stats (text) failed"
note "link down: b0 write errors $we; $(grep ' b0 ' "$tmp/rp.txt")"
netns_link_restore
ok=0
for (( i = 0; i < 60; i++ )); do
    if probe; then ok=1; break; fi
    sleep 0.5
done
[ "$ok" = 1 ] || fail "writes to the remote volume still fail 30 s after the link came back"
rc_n=$(dev_counter reconnects)
[ "$rc_n" -ge 1 ] || fail "the reconnect was not counted: reconnects $rc_n"
# The writes that failed while the link came back count too.
we2=$(dev_counter errors.write)
[ "$we2" -ge "$we" ] || fail "write errors went down from $we to $we2"
we=$we2
vdlvm_a -c "$rconf" stats rp --prometheus > "$tmp/rp.prom" || fail "stats --prometheus failed"
promtool check metrics < "$tmp/rp.prom" || fail "promtool rejects the exposition: $(cat "$tmp/rp.prom")"
grep -qx "vdlvm_device_errors_total{pool=\"rp\",device=\"b0\",op=\"write\"} $we" "$tmp/rp.prom" ||
    fail "write errors differ between --json and --prometheus: $(grep device_errors "$tmp/rp.prom")"
grep -qx "vdlvm_device_reconnects_total{pool=\"rp\",device=\"b0\"} $rc_n" "$tmp/rp.prom" ||
    fail "reconnects differ between --json and --prometheus: $(grep reconnects "$tmp/rp.prom")"
grep -qx "vdlvm_device_up{pool=\"rp\",device=\"b0\",node=\"nodeb\"} 1" "$tmp/rp.prom" ||
    fail "b0 not up after the reconnect: $(grep device_up "$tmp/rp.prom")"
vdlvm_a -c "$rconf" status rp --json | grep -q '"reconnects":'"$rc_n" ||
    fail "status --json does not show the device's reconnects"
note "link back: b0 reconnects $rc_n, write errors $we; promtool ok"

# A device missing when tgtd opens the pool, back later: the pool's retry
# attaches it and counts its return as one reconnect (before: 0, no
# handle); the counter never goes back.
lconf=$(make_pool_conf lp 3 32MiB 4MiB)
vdlvm_a pool create "$lconf" >/dev/null || fail "pool create lp failed"
vdlvm_a -c "$lconf" vol create lp/vol --size 4MiB >/dev/null || fail "vol create lp/vol failed"
mv "$tmp/lp-d2.img" "$tmp/lp-d2.away"
tgt_target_new 2 lvol || fail "nodea: cannot create target 2"
tgt_lun_new 2 1 vdlvm lp/vol "conf=$lconf" || fail "nodea: cannot export lp/vol with d2 missing"
lp_d2() {
    vdlvm_a -c "$lconf" stats lp --json | python3 -c '
import json, sys
d = [d for d in json.load(sys.stdin)["devices"] if d["device"] == "d2"][0]
print(d["state"], d["reconnects"])'
}
read -r st n < <(lp_d2) || fail "stats lp failed"
[ "$st" != ok ] && [ "$n" = 0 ] || fail "d2 missing at open: state $st reconnects $n"
mv "$tmp/lp-d2.away" "$tmp/lp-d2.img"
ok=0
for (( i = 0; i < 60; i++ )); do
    read -r st n < <(lp_d2) || fail "stats lp failed"
    [ "$st" = ok ] && { ok=1; break; }
    sleep 0.5
done
[ "$ok" = 1 ] || fail "d2 did not rejoin within 30 s: state $st"
[ "$n" = 1 ] || fail "d2 rejoined; reconnects $n, expected 1"
note "device missing at open, back: reconnects 0 -> $n"
note "ok"
