#!/bin/bash
# integration: long
# Remote devices (issue 3): two emulated nodes in network namespaces of their
# own, joined by a veth pair (198.51.100.1 = nodea, 198.51.100.2 = nodeb).
# nodeb runs a stock tgtd exporting its 200 MiB disk (rdwr on a file); nodea
# runs tgtd with the vdlvm module, the vdlvm command and the initiators.
#
#   1. a 300 MiB volume on a pool of nodea's disk (a0) and nodeb's (b0):
#      random data written through iSCSI reads back equal, and b0's file
#      really holds the part of the volume mapped there;
#   2. the peer goes silent, and separately its link goes down, during a
#      write load: writes to b0's extents fail within the timeout (measured),
#      writes to a0's extents succeed, tgtd answers tgtadm throughout, and
#      I/O to b0's extents works again by itself once the link is back
#      (recovery time measured);
#   3. CHAP: the right secret works, a wrong one and a world-readable secret
#      file are refused with clear messages; the secret is nowhere in status
#      output, logs or on disk.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v ip
requires qemu-img --version
requires qemu-io --version
requires sh -c 'qemu-img --help | grep -qw iscsi'
requires_file "$BUILD/vdload"

MiB=$((1024 * 1024))
ES=$((4 * MiB))
TIMEOUT_MS=3000                # the remote device's per-command limit

netns_setup_pair
A=$netns_a B=$netns_b

in_a() { ip netns exec "$A" "$@"; }
vdlvm_a() { in_a timeout 120 "$VDLVM" "$@"; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# le() A B: A <= B for decimal numbers
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# ---- nodeb: a stock tgtd with its disk (and a second one behind CHAP) ------
start_tgtd --netns "$B" --addr "$netns_b_addr" --no-module
b_pid=$tgtd_pid b_ctl=$tgtd_ctl b_port=$tgtd_port
truncate -s 200M "$tmp/nodeb-disk.img"
truncate -s 64M "$tmp/nodeb-chap.img"
tgt_target_new 1 nodeb || fail "nodeb: cannot create target"
tgt_lun_new 1 1 rdwr "$tmp/nodeb-disk.img" || fail "nodeb: cannot export its disk"
url_b=$(iscsi_url 1 1)
tgt_target_new 2 nodeb-chap || fail "nodeb: cannot create the CHAP target"
tgt_lun_new 2 1 rdwr "$tmp/nodeb-chap.img" || fail "nodeb: cannot export the CHAP disk"
url_b_chap=$(iscsi_url 2 1)
chap_secret="vdlvm-Secret-$$-$RANDOM"
tgt_adm --mode account --op new --user vdlvmtest --password "$chap_secret" ||
    fail "nodeb: cannot create the CHAP account"
tgt_adm --mode account --op bind --tid 2 --user vdlvmtest ||
    fail "nodeb: cannot bind the CHAP account"

# ---- nodea: the pool ----------------------------------------------------------
conf=$tmp/rp.yaml
cat > "$conf" <<EOF
pool: rp
extent_size: 4MiB
devices:
  - name: a0
    path: $tmp/nodea-disk.img
    size: 200MiB
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: ${TIMEOUT_MS}ms
EOF
vdlvm_a pool create "$conf" || fail "pool create with a remote device failed"
vdlvm_a -c "$conf" vol create rp/vol --size 300MiB || fail "vol create failed"
vdlvm_a -c "$conf" status rp >&2 || fail "status failed"
vdlvm_a -c "$conf" status rp/vol --json > "$tmp/vol.json" || fail "status --json failed"

# runs DEVICE: "le count pe" per run of the volume on DEVICE
runs() {
    grep -o '{"leg":[0-9]*,"le":[0-9]*,"count":[0-9]*,"device":"[^"]*","node":"[^"]*","pe":[0-9]*}' "$tmp/vol.json" |
        sed -n 's/.*"le":\([0-9]*\),"count":\([0-9]*\),"device":"'"$1"'".*"pe":\([0-9]*\)}/\1 \2 \3/p'
}
runs a0 > "$tmp/runs-a0"
runs b0 > "$tmp/runs-b0"
b_extents=$(awk '{ n += $2 } END { print n + 0 }' "$tmp/runs-b0")
a_extents=$(awk '{ n += $2 } END { print n + 0 }' "$tmp/runs-a0")
[ $(( a_extents + b_extents )) = 75 ] ||
    fail "the 300 MiB volume should have 75 extents on a0 and b0: $(cat "$tmp/vol.json")"
# Equal disks take about equal shares: 37/38 extents, about 150 MiB each.
[ "$b_extents" -ge 36 ] && [ "$a_extents" -ge 36 ] ||
    fail "the volume should take about half of each disk, 150 MiB (a0 $a_extents, b0 $b_extents extents)"
note "volume rp/vol: $a_extents extents on a0 (nodea), $b_extents on b0 (nodeb)"

start_tgtd --netns "$A" --addr "$netns_a_addr"
a_pid=$tgtd_pid a_ctl=$tgtd_ctl
tgt_target_new 1 vol || fail "nodea: cannot create target"
tgt_lun_new 1 1 vdlvm rp/vol "conf=$conf" || fail "nodea: cannot export rp/vol"
url_a=$(iscsi_url 1 1)

# ---- 1. the research scenario, scaled down --------------------------------------
random_file "$tmp/in" 300
in_a timeout 300 qemu-img convert -n -f raw -O raw "$tmp/in" "$url_a" ||
    fail "writing 300 MiB to $url_a failed"
in_a timeout 300 qemu-img convert -f raw -O raw "$url_a" "$tmp/out" ||
    fail "reading $url_a back failed"
truncate -s $((300 * MiB)) "$tmp/out"
cmp "$tmp/in" "$tmp/out" || fail "data read back differs from data written"
rm -f "$tmp/out"
# Every run of the volume on b0 is on nodeb's disk file, byte for byte.
doff=$((5 * MiB))   # data area of a device: after header and 4 MiB metadata
while read -r le count pe; do
    cmp <(dd if="$tmp/nodeb-disk.img" bs=1M iflag=skip_bytes,count_bytes \
             skip=$((doff + pe * ES)) count=$((count * ES)) status=none) \
        <(dd if="$tmp/in" bs=1M iflag=skip_bytes,count_bytes \
             skip=$((le * ES)) count=$((count * ES)) status=none) ||
        fail "nodeb's disk does not hold extents $le+$count of the volume at pe $pe"
done < "$tmp/runs-b0"
b_used=$(( $(stat -c '%b * %B' "$tmp/nodeb-disk.img") ))
[ "$b_used" -ge $(( b_extents * ES )) ] ||
    fail "nodeb's disk file has only $b_used bytes allocated for $b_extents extents"
note "scenario 1: 300 MiB written and read back equal; nodeb's disk holds $((b_extents * 4)) MiB of it ($((b_used / MiB)) MiB allocated)"

# ---- 2. the peer goes silent / its link goes down -------------------------------
read -r le_a _ _ < "$tmp/runs-a0"
read -r le_b _ _ < "$tmp/runs-b0"
off_a=$((le_a * ES)) off_b=$((le_b * ES))

# probe OFF: one 64 KiB write through the vdlvm LUN; prints "rc seconds".
probe() {
    local t0 rc=0
    t0=$(now)
    in_a timeout 60 qemu-io -f raw -c "write -P 0x5a $1 64k" "$url_a" \
        > "$tmp/probe.out" 2>&1 || rc=$?
    grep -q "failed" "$tmp/probe.out" && [ "$rc" = 0 ] && rc=1
    echo "$rc $(elapsed "$t0" "$(now)")"
}
# tgtadm on nodea answers quickly
adm_ok() {
    local t0
    t0=$(now)
    timeout 10 tgtadm -C "$a_ctl" --mode target --op show >/dev/null ||
        fail "tgtadm on nodea did not answer"
    le "$(elapsed "$t0" "$(now)")" 2 || fail "tgtadm on nodea took $(elapsed "$t0" "$(now)") s"
}
dev_state() {
    vdlvm_a -c "$conf" status rp --json 2>/dev/null |
        grep -o '{"name":"b0"[^}]*}' | sed -n 's/.*"state":"\([^"]*\)","message":"\([^"]*\)".*/\1: \2/p'
}

# fault_cycle NAME INJECT: write load on a0's extents; INJECT the fault;
# writes to b0 must fail within the timeout while a0's succeed; then the
# link is restored and b0's extents must work again by themselves.
fault_cycle() {
    local name=$1 inject=$2 r t t_fault t_first_fail='' worst=0 i rc secs
    read -r rc secs < <(probe "$off_b")
    [ "$rc" = 0 ] || fail "$name: write to b0's extents failed before the fault: $(cat "$tmp/probe.out")"
    # Background write load on a0's extents for the whole cycle.
    in_a timeout 200 "$BUILD/vdload" write --range "$off_a:$((16 * MiB))" --bs 64k \
        --qd 8 --time 40 --io-timeout 20 --continue-on-error --json --quiet \
        --started "$tmp/load-$name.started" "$url_a" \
        > "$tmp/load-$name.json" 2> "$tmp/load-$name.err" &
    local load_pid=$!
    cleanup_fn _stop_pid "$load_pid"
    wait_started "$tmp/load-$name.started" "$load_pid" ||
        fail "$name: the load did not start: $(cat "$tmp/load-$name.err")"
    t_fault=$(now)
    $inject || fail "$name: cannot inject the fault"
    note "$name: fault injected (${netns_silent_how:-link down})"
    # Writes to b0's extents fail, each within the timeout (plus the
    # initiator's own start-up); later ones at once.
    for (( i = 0; i < 4; i++ )); do
        read -r rc secs < <(probe "$off_b")
        [ "$rc" != 0 ] || fail "$name: a write to b0's extents succeeded with the peer unreachable"
        le "$secs" $(( TIMEOUT_MS / 1000 + 2 )) ||
            fail "$name: a write to b0's extents took $secs s to fail (timeout $TIMEOUT_MS ms)"
        [ -n "$t_first_fail" ] || t_first_fail=$(elapsed "$t_fault" "$(now)")
        le "$secs" "$worst" || worst=$secs
        read -r rc secs < <(probe "$off_a")
        [ "$rc" = 0 ] || fail "$name: a write to a0's extents failed: $(cat "$tmp/probe.out")"
        adm_ok
    done
    state=$(dev_state)
    note "$name: b0 state: $state"
    [[ $state == failed:\ reconnecting\ since* ]] ||
        fail "$name: status does not say b0 is reconnecting: $state"
    note "$name: first failed write to b0 reported $t_first_fail s after the fault; slowest failing write $worst s (timeout $TIMEOUT_MS ms)"
    eval "measured_$name=\"first failure after ${t_first_fail}s, slowest failing write ${worst}s\""

    # Restore; b0's extents must work again without any admin action.
    local t_restore ok=0
    t_restore=$(now)
    netns_link_restore
    for (( i = 0; i < 120; i++ )); do
        read -r rc secs < <(probe "$off_b")
        if [ "$rc" = 0 ]; then ok=1; break; fi
        adm_ok
        sleep 0.5
    done
    [ "$ok" = 1 ] || fail "$name: writes to b0's extents still fail 60 s after the link came back"
    t=$(elapsed "$t_restore" "$(now)")
    note "$name: writes to b0's extents work again ${t}s after the link came back"
    eval "recovery_$name=$t"
    state=$(dev_state)
    [ "$state" = "ok: " ] || fail "$name: b0 state after recovery: $state"
    wait "$load_pid" || fail "$name: the write load on a0 failed: $(cat "$tmp/load-$name.err")"
    grep -q '"errors":0,"timeouts":0' "$tmp/load-$name.json" ||
        fail "$name: writes to a0's extents failed during the fault: $(cat "$tmp/load-$name.json")"
    note "$name: write load on a0: $(grep -o '"write":{"ios":[0-9]*' "$tmp/load-$name.json" | sed 's/.*://') writes, none failed"
}
fault_cycle silent netns_link_silent
netns_silent_how=
fault_cycle linkdown netns_link_down

# The data written in scenario 1 outside the probed blocks is intact.
in_a timeout 300 qemu-img convert -f raw -O raw "$url_a" "$tmp/out" ||
    fail "reading $url_a back after the faults failed"
truncate -s $((300 * MiB)) "$tmp/out"
cmp <(dd if="$tmp/in" bs=1M skip=$(( (off_b + 64 * 1024) / MiB + 1)) count=8 status=none) \
    <(dd if="$tmp/out" bs=1M skip=$(( (off_b + 64 * 1024) / MiB + 1)) count=8 status=none) ||
    fail "b0's data changed around the probed block"
rm -f "$tmp/out"

# ---- 3. CHAP --------------------------------------------------------------------
chap_conf() { # NAME SECRET_FILE
    cat > "$tmp/$1.yaml" <<EOF
pool: $1
devices:
  - name: c0
    path: $tmp/$1-local.img
    size: 64MiB
  - name: c1
    iscsi: $url_b_chap
    node: nodeb
    timeout: ${TIMEOUT_MS}ms
    chap: {user: vdlvmtest, secret_file: $2}
EOF
    echo "$tmp/$1.yaml"
}
( umask 077; echo "wrong-$chap_secret" > "$tmp/chap-wrong"; echo "$chap_secret" > "$tmp/chap-right" )
c=$(chap_conf cpw "$tmp/chap-wrong")
expect_fail nz "c1.*Authentication failure.*chap.secret_file" vdlvm_a pool create "$c"
[ ! -e "$tmp/cpw-local.img" ] || fail "a failed pool create left $tmp/cpw-local.img behind"
cp -p "$tmp/chap-right" "$tmp/chap-open"
chmod 644 "$tmp/chap-open"
c=$(chap_conf cpo "$tmp/chap-open")
expect_fail nz "c1.*chmod 600 $tmp/chap-open" vdlvm_a pool create "$c"
# No CHAP at all against a target that requires it.
sed '/chap:/d' "$c" > "$tmp/cpn.yaml"
sed -i 's/^pool: cpo/pool: cpn/; s/cpo-local/cpn-local/' "$tmp/cpn.yaml"
expect_fail nz "c1.*requires CHAP" vdlvm_a pool create "$tmp/cpn.yaml"
cmp -n 4096 "$tmp/nodeb-chap.img" /dev/zero >/dev/null 2>&1 ||
    fail "a refused pool create wrote to nodeb's CHAP disk"
c=$(chap_conf cp "$tmp/chap-right")
vdlvm_a pool create "$c" || fail "pool create with the right CHAP secret failed"
vdlvm_a -c "$c" vol create cp/v --size 32MiB || fail "vol create on the CHAP pool failed"
vdlvm_a -c "$c" status cp > "$tmp/chap-status.txt" 2>&1 || fail "status of the CHAP pool failed"
grep -q "c1" "$tmp/chap-status.txt" || fail "status does not show c1: $(cat "$tmp/chap-status.txt")"
for f in "$tmp/chap-status.txt" "$tmp/nodeb-chap.img" "$tmp"/tgtd-*.log; do
    ! grep -qa -- "$chap_secret" "$f" || fail "the CHAP secret appears in $f"
done
note "scenario 3: CHAP right secret works; wrong secret, open secret file and missing CHAP refused"

note "RESULT silent peer: ${measured_silent}; recovery ${recovery_silent}s after the link came back"
note "RESULT link down: ${measured_linkdown}; recovery ${recovery_linkdown}s after the link came back"
