#!/bin/bash
# Ceph RBD images as pool devices (issue 19), against a one-node test cluster
# (ceph-common.sh: mon + mgr + one memstore OSD on 127.0.0.1).
#
# 1. Pool p1: a local file d0 and an RBD image r0 (node: the cluster's fsid,
#    so a mirror across them has its legs on distinct nodes); pool p2: one
#    RBD image r1 only.  A 2-leg mirror p1/m and a linear p2/lin, exported by
#    a real tgtd with the module, written through iSCSI (qemu) and read back.
# 2. Each leg alone holds the data: the mirror's extents on the local file
#    and in `rbd export` of the image (offsets from the device headers and
#    `vdlvm status --json`) both equal what was written.
# 3. The OSD goes away during a write load on the mirror: every write still
#    succeeds (from the local leg, the RBD leg fails); a write to the linear
#    volume on RBD fails within the device timeout, and tgtadm answers while
#    it is pending (tgtd's main thread does not wait on Ceph).
# 4. The OSD comes back: the RBD leg returns by itself, resyncs, both legs
#    hold the same bytes again, and the linear volume writes again.
# 5. The monitor is killed (SIGKILL) during a write load on the linear
#    volume: every write completes or fails within the device timeout
#    (nothing hangs; with the OSD up, librados keeps writing through its
#    OSD sessions, so writes may well succeed), tgtadm answers meanwhile;
#    the monitor back, the volume writes again.
# 0. Before all that, the driver's asynchronous op (bdev submit, issue 19)
#    on an image of its own, through remote-tool built with RBD: 64 bios
#    in flight, flush, 64 reads back equal, every done once and never
#    inside submit, a synchronous caller beside; close with 64 writes in
#    flight returns with every done run; the OSD stopped under a qd 32
#    load of submitted writes: every bio done within timeout + 3 s (librbd
#    fails it by rados_osd_op_timeout, the driver's watchdog 2 s later at
#    the latest); the OSD back: submitted writes succeed again.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
source "$(dirname "$0")/ceph-common.sh"

requires_tgtd
requires_vdlvm
requires qemu-img --version
requires qemu-io --version
ceph_requires
SECONDS=0

TIMEOUT_S=5
ceph_start
ceph_image img1 96M
ceph_image img2 64M

cat >"$tmp/p1.yaml" <<EOF
pool: p1
extent_size: 4MiB
devices:
  - name: d0
    path: $tmp/p1-d0.img
    size: 96MiB
  - name: r0
    rbd: {pool: rbd, image: img1, conf: $CEPH_CONF, id: admin}
    timeout: ${TIMEOUT_S}s
EOF
cat >"$tmp/p2.yaml" <<EOF
pool: p2
extent_size: 4MiB
devices:
  - name: r1
    rbd: {pool: rbd, image: img2, conf: $CEPH_CONF}
    timeout: ${TIMEOUT_S}s
EOF
# ---- 0: the asynchronous op, directly ------------------------------------------
RTOOL=$tmp/remote-tool-rbd
cc -std=gnu11 -D_GNU_SOURCE -DREMOTE_TOOL_RBD -Wall -I"$top_srcdir" -o "$RTOOL" \
    "$top_srcdir/tests/integration/remote-tool.c" "$BUILD/libvdlvm.a" \
    -liscsi -lrbd -lrados -lyaml -lcrypto -lblkid -luring -lpthread ||
    fail "cannot build remote-tool with RBD"
ceph_image img4 160M
out=$(timeout 120 "$RTOOL" submit "rbd:$CEPH_CONF:rbd/img4" $((TIMEOUT_S * 1000)) check 2>&1) ||
    fail "rbd submit check failed: $out"
note "rbd submit check: $(tr '\n' ' ' <<<"$out")"
mkdir -p "$tmp/rclose" && touch "$tmp/rclose/go"
out=$(timeout 120 "$RTOOL" submit "rbd:$CEPH_CONF:rbd/img4" $((TIMEOUT_S * 1000)) close "$tmp/rclose" 2>&1) ||
    fail "rbd submit: close with bios in flight: $out"
note "rbd submit close: $out"
# the OSD goes away under a qd 32 load of submitted writes: every bio
# fails within the timeout + librbd's grace, the OSD back: writes succeed
mkdir -p "$tmp/rsilent"
SUBMIT_SLACK_MS=3000 timeout 120 "$RTOOL" submit "rbd:$CEPH_CONF:rbd/img4" \
    $((TIMEOUT_S * 1000)) silent "$tmp/rsilent" >"$tmp/rsilent.out" 2>&1 &
tool_pid=$!
cleanup_fn kill_quiet "$tool_pid"
wait_for 20 test -e "$tmp/rsilent/loaded" || fail "rbd submit load did not start: $(cat "$tmp/rsilent.out")"
ceph_osd_stop
wait_for 30 test -e "$tmp/rsilent/failed" || fail "no submitted bio failed with the OSD gone: $(cat "$tmp/rsilent.out")"
ceph_osd_start
wait "$tool_pid" && rc=0 || rc=$?
note "rbd submit, OSD away and back: $(tr '\n' ' ' <"$tmp/rsilent.out")"
[ "$rc" = 0 ] || fail "rbd submit with the OSD away: $(cat "$tmp/rsilent.out")"
if [ "${SUBMIT_BENCH:-0}" = 1 ]; then
    for i in 1 2 3; do
        out=$(timeout 120 "$RTOOL" submit "rbd:$CEPH_CONF:rbd/img4" 5000 bench 32 4 2>&1) ||
            fail "rbd bench: $out"
        note "RESULT rbd bench run $i: $out; load $(cut -d' ' -f1-3 /proc/loadavg)"
    done
fi
ceph_cmd rbd rm --no-progress rbd/img4 >/dev/null 2>&1 || true

vdlvm pool create "$tmp/p1.yaml" || fail "pool create p1 failed"
vdlvm pool create "$tmp/p2.yaml" || fail "pool create p2 failed"
vdlvm status p1 >"$tmp/st1" 2>&1 || fail "status p1: $(cat "$tmp/st1")"
note "status p1: $(tr '\n' '|' <"$tmp/st1")"
grep -q "rbd:rbd/img1" "$tmp/st1" || fail "status p1 does not show rbd:rbd/img1"
grep -q "$CEPH_FSID" "$tmp/st1" || fail "r0's node is not the cluster fsid $CEPH_FSID"
grep -qi 'keyring\|key =' "$tmp/st1" && fail "status shows key material"

# an image holding data is refused without --force, and left as it was
head -c $((4 * 1024 * 1024)) /dev/urandom >"$tmp/foreign"
ceph_cmd rbd import --no-progress --image-feature layering "$tmp/foreign" rbd/img3 ||
    fail "rbd import failed"
cat >"$tmp/p3.yaml" <<EOF
pool: p3
devices:
  - name: r3
    rbd: {pool: rbd, image: img3, conf: $CEPH_CONF}
EOF
expect_fail nz 'non-zero data|foreign|--force' vdlvm pool create "$tmp/p3.yaml"
! vdlvm pool create "$tmp/p3.yaml" 2>&1 | grep -q '(null)' ||
    fail "the refusal does not name the image (shows (null))"
ceph_cmd rbd export --no-progress rbd/img3 "$tmp/img3.exp" || fail "rbd export img3 failed"
cmp -s "$tmp/foreign" "$tmp/img3.exp" || fail "a refused pool create changed the image"

vdlvm vol create p1/m --size 16MiB --layout mirror --copies 2 ||
    fail "mirror across the local file and the RBD image refused"
vdlvm vol create p2/lin --size 16MiB || fail "linear volume on RBD refused"

start_tgtd
tgt_target_new 1 m || fail "cannot create target 1"
tgt_lun_new 1 1 vdlvm p1/m "conf=$tmp/p1.yaml" || fail "cannot export p1/m"
tgt_target_new 2 lin || fail "cannot create target 2"
tgt_lun_new 2 1 vdlvm p2/lin "conf=$tmp/p2.yaml" || fail "cannot export p2/lin"
url_m=$(iscsi_url 1 1)
url_l=$(iscsi_url 2 1)

# ---- 1: written through iSCSI and read back -------------------------------
random_file "$tmp/data" 16
iscsi_write "$tmp/data" "$url_m" || fail "write to the mirror failed"
iscsi_write "$tmp/data" "$url_l" || fail "write to the linear volume failed"
iscsi_read "$url_m" "$tmp/back" $((16 * MiB)) || fail "read of the mirror failed"
cmp -s "$tmp/data" "$tmp/back" || fail "mirror: data read back differs"
iscsi_read "$url_l" "$tmp/back" $((16 * MiB)) || fail "read of the linear volume failed"
cmp -s "$tmp/data" "$tmp/back" || fail "linear on RBD: data read back differs"
note "written and read back through iSCSI (${SECONDS}s)"

# ---- 2: each leg alone holds the data ---------------------------------------
# le64 FILE OFFSET
le64() { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
# leg_bytes DEVFILE DEV OUT: the volume's bytes on device DEV (image in
# DEVFILE) by the runs of `status --json`.
leg_bytes() {
    local f=$1 dev=$2 out=$3 doff runs
    doff=$(le64 "$f" 88)
    : >"$out"
    runs=$(vdlvm status p1/m --json | grep -o '{"leg":[0-9]*,"le":[0-9]*,"count":[0-9]*,"device":"'"$dev"'","node":"[^"]*","pe":[0-9]*}' ||
           true)
    [ -n "$runs" ] || return 1
    while read -r le cnt pe; do
        dd if="$f" bs=4M skip=$(( doff + pe * 4 * MiB )) count="$cnt" \
           iflag=skip_bytes status=none >>"$out" || return 1
    done < <(sed 's/.*"le":\([0-9]*\),"count":\([0-9]*\),.*"pe":\([0-9]*\)}/\1 \2 \3/' <<<"$runs" | sort -n)
}
check_legs() {
    ceph_cmd rbd export --no-progress rbd/img1 "$tmp/img1.exp" ||
        fail "rbd export failed"
    leg_bytes "$tmp/p1-d0.img" d0 "$tmp/leg-d0" || fail "no runs of p1/m on d0: $(vdlvm status p1/m --json)"
    leg_bytes "$tmp/img1.exp" r0 "$tmp/leg-r0" || fail "no runs of p1/m on r0"
    cmp -s "$1" "$tmp/leg-d0" || fail "$2: the local leg does not hold the data"
    cmp -s "$1" "$tmp/leg-r0" || fail "$2: the RBD leg (rbd export) does not hold the data"
    rm -f "$tmp/img1.exp"
}
check_legs "$tmp/data" "after the first write"
note "each leg holds the data: local file and rbd export (${SECONDS}s)"

# ---- 3: the OSD goes away during a write load --------------------------------
# 12 writes of 1 MiB (pattern i) to the mirror, one after the other; the
# OSD stops after the third.
cp "$tmp/data" "$tmp/expect"
: >"$tmp/load.fail"
(
    for i in $(seq 1 12); do
        timeout 60 qemu-io -f raw -c "write -P $((0x40 + i)) $(( i * MiB )) 1M" \
            "$url_m" >/dev/null 2>"$tmp/load.err" ||
            echo "write $i: $(cat "$tmp/load.err")" >>"$tmp/load.fail"
        [ "$i" = 3 ] && touch "$tmp/load.third"
    done
) &
load_pid=$!
cleanup_fn kill_quiet "$load_pid"
wait_for 60 test -e "$tmp/load.third" || fail "the write load did not start"
t0=$(now)
ceph_osd_stop
note "OSD stopped during the write load"

# The linear volume on RBD: a write fails within the timeout; tgtadm
# answers while it is pending.
t1=$(now)
timeout 60 qemu-io -f raw -c "write -P 0x77 0 64k" "$url_l" >"$tmp/lin.out" 2>&1 &
lin_pid=$!
sleep 0.5
timeout 5 tgtadm -C "$tgtd_ctl" --mode target --op show >/dev/null ||
    fail "tgtadm did not answer while a write to the RBD device was pending"
wait "$lin_pid" && lin_rc=0 || lin_rc=$?
t2=$(now)
lin_s=$(elapsed "$t1" "$t2")
grep -qi 'error\|fail' "$tmp/lin.out" || [ "$lin_rc" != 0 ] ||
    fail "a write to the linear volume succeeded with the OSD gone: $(cat "$tmp/lin.out")"
awk -v s="$lin_s" -v t="$TIMEOUT_S" 'BEGIN { exit !(s < 3 * t + 6) }' ||
    fail "the write to the linear volume took ${lin_s}s to fail (timeout ${TIMEOUT_S}s)"
note "linear on RBD: write failed after ${lin_s}s (timeout ${TIMEOUT_S}s): $(tr '\n' ' ' <"$tmp/lin.out" | cut -c1-160)"

wait "$load_pid" || true
[ -s "$tmp/load.fail" ] && fail "mirror writes failed with the OSD gone: $(cat "$tmp/load.fail")"
note "12 mirror writes succeeded across the OSD stop ($(elapsed "$t0" "$(now)")s)"
for i in $(seq 1 12); do
    head -c $MiB /dev/zero | tr '\0' "\\$(printf '%03o' $((0x40 + i)))" |
        dd of="$tmp/expect" bs=1M seek="$i" conv=notrunc status=none
done
iscsi_read "$url_m" "$tmp/back" $((16 * MiB)) || fail "read of the mirror failed with the OSD gone"
cmp -s "$tmp/expect" "$tmp/back" || fail "mirror with the OSD gone: data read back differs"
leg_state_r0() { vdlvm status p1/m --json | grep -o '{"leg":[0-9]*,"device":"r0"[^}]*}' | sed -n 's/.*"state":"\([^"]*\)".*/\1/p'; }
note "RBD leg state with the OSD gone: $(leg_state_r0)"

# ---- 4: the OSD comes back: resync, legs equal -------------------------------
ceph_osd_start
in_sync() {
    local s
    s=$(vdlvm status p1/m --json 2>/dev/null) || return 1
    ! grep -q '"state":"\(stale\|failed\|resyncing\)"' <<<"$s" &&
        grep -q '"resync":{"state":"idle"' <<<"$s"
}
wait_for 60 in_sync || fail "the mirror did not resync within 60 s of the OSD's return: $(vdlvm status p1/m)"
note "RBD leg back and resynced ($(elapsed "$t0" "$(now)")s after the OSD stop)"
check_legs "$tmp/expect" "after the resync"
lin_writes() {
    timeout 30 qemu-io -f raw -c "write -P 0x78 0 64k" "$url_l" >"$tmp/lin.out" 2>&1 &&
        ! grep -qi 'error\|fail' "$tmp/lin.out"
}
wait_for 30 lin_writes ||
    fail "the linear volume does not write again with the OSD back: $(cat "$tmp/lin.out")"
note "linear volume writes again with the OSD back"

# ---- 5: the monitor is killed during a write load -------------------------------
# Writes of 64 KiB to the linear volume, one after the other (0.2 s apart),
# each timed, until mon.stop; the monitor is killed after the second and
# stays away for twice the device timeout.
: >"$tmp/mon.times"
(
    for (( i = 1; i <= 300; i++ )); do
        s0=$(now)
        timeout 60 qemu-io -f raw -c "write -P $(( 0x50 + i % 64 )) $(( i % 200 * 64 ))k 64k" \
            "$url_l" >"$tmp/mon.out" 2>&1 && rc=0 || rc=$?
        grep -qi 'error\|fail' "$tmp/mon.out" && [ "$rc" = 0 ] && rc=1
        echo "$i $rc $(elapsed "$s0" "$(now)") $([ -e "$tmp/mon.dead" ] && echo dead || echo up)" >>"$tmp/mon.times"
        [ "$i" = 2 ] && touch "$tmp/mon.second"
        [ -e "$tmp/mon.stop" ] && break
        sleep 0.2
    done
) &
load_pid=$!
cleanup_fn kill_quiet "$load_pid"
wait_for 60 test -e "$tmp/mon.second" || fail "the write load on the linear volume did not start"
t0=$(now)
ceph_mon_kill
touch "$tmp/mon.dead"
note "monitor killed during the write load"
for (( k = 0; k < 2 * TIMEOUT_S; k++ )); do
    timeout 5 tgtadm -C "$tgtd_ctl" --mode target --op show >/dev/null ||
        fail "tgtadm did not answer with the monitor killed"
    sleep 1
done
touch "$tmp/mon.stop"
wait_for 120 eval '! kill -0 '"$load_pid" || fail "the write load hangs with the monitor killed"
wait "$load_pid" || true
rm -f "$tmp/mon.dead"
dead=$(awk '$4 == "dead"' "$tmp/mon.times" | wc -l)
dead_ok=$(awk '$4 == "dead" && $2 == 0' "$tmp/mon.times" | wc -l)
longest=$(awk '$3 > m { m = $3 } END { print m + 0 }' "$tmp/mon.times")
note "monitor killed for $((2 * TIMEOUT_S)) s: $dead writes ($dead_ok succeeded, the rest failed), the longest took ${longest}s (timeout ${TIMEOUT_S}s)"
[ "$dead" -ge 3 ] || fail "too few writes while the monitor was away: $(cat "$tmp/mon.times")"
awk -v t="$TIMEOUT_S" '$3 >= 3 * t + 6 { bad = 1 } END { exit bad }' "$tmp/mon.times" ||
    fail "a write took longer than the timeout allows with the monitor killed: $(cat "$tmp/mon.times")"
timeout 5 tgtadm -C "$tgtd_ctl" --mode target --op show >/dev/null ||
    fail "tgtadm did not answer after the load with the monitor killed"
ceph_mon_start
note "monitor back ($(elapsed "$t0" "$(now)")s after the kill)"
wait_for 30 lin_writes ||
    fail "the linear volume does not write again with the monitor back: $(cat "$tmp/lin.out")"
note "linear volume writes again with the monitor back"

# tgtd exits cleanly with RBD devices (librados must not run into exit)
pid=$tgtd_pid
for tid in 1 2; do
    tgt_adm --lld iscsi --mode target --op delete --tid "$tid" --force ||
        fail "cannot delete target $tid"
done
tgt_adm --mode system --op delete >/dev/null 2>&1 || true
wait_for 45 eval '! kill -0 '"$pid" || fail "tgtd did not exit within 45 s"
wait "$pid" && rc=0 || rc=$?
_forget_tgtd "$pid"
[ "$rc" = 0 ] || fail "tgtd exited with status $rc (crash?) after closing the RBD devices"
note "PASS (${SECONDS}s)"
