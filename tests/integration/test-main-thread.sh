#!/bin/bash
# integration: solo
# tgtd's main thread is never held by a pool whose remote device is silent.
#
# Two emulated nodes in network namespaces: nodeb runs a stock tgtd with a
# disk; nodea runs tgtd with the vdlvm module and two pools:
#   lp  two local files, volume lp/lv exported as target 1
#   rp  a local file (a0) and nodeb's disk (b0, timeout 10 s), volume rp/rv
#       exported as target 2
# Then nodeb goes silent (packets dropped) and, while a reader keeps one
# 4 KiB read in flight on lp/lv without pause:
#   1. `vdlvm vol create rp/new` (its metadata commit writes to b0) and
#      `vdlvm status rp` (waits for the pool's admin lock) run through the
#      control socket and hang on the network for about the timeout;
#   2. rp/rv's LUN is deleted, which closes pool rp (flush, logout of b0);
#      tgtadm answers at once;
# and every read on lp/lv completes within READ_BOUND_MS (tgtd's main thread
# serves every LUN's commands, so a command or a close waiting on nodeb
# there would stall them for the 10 s timeout).  Then the link comes back,
# rp/rv is exported again (after the background close) and both pools work.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v ip
requires qemu-io --version
requires_file "$BUILD/vdload"

MiB=$((1024 * 1024))
TIMEOUT_MS=10000
READ_BOUND_MS=${READ_BOUND_MS:-3000}

netns_setup_pair
A=$netns_a B=$netns_b
in_a() { ip netns exec "$A" "$@"; }
vdlvm_a() { in_a timeout 120 "$VDLVM" "$@"; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# ---- nodeb: a stock tgtd with its disk -------------------------------------
start_tgtd --netns "$B" --addr "$netns_b_addr" --no-module
truncate -s 64M "$tmp/nodeb-disk.img"
tgt_target_new 1 nodeb || fail "nodeb: cannot create target"
tgt_lun_new 1 1 rdwr "$tmp/nodeb-disk.img" || fail "nodeb: cannot export its disk"
url_b=$(iscsi_url 1 1)

# ---- nodea: two pools --------------------------------------------------------
lp_conf=$(make_pool_conf lp 2 64MiB)
rp_conf=$tmp/rp.yaml
cat > "$rp_conf" <<EOF
pool: rp
devices:
  - name: a0
    path: $tmp/rp-a0.img
    size: 64MiB
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: ${TIMEOUT_MS}ms
EOF
vdlvm_a pool create "$lp_conf" >/dev/null || fail "pool create lp failed"
vdlvm_a pool create "$rp_conf" >/dev/null || fail "pool create rp failed"
vdlvm_a -c "$lp_conf" vol create lp/lv --size 32MiB >/dev/null || fail "vol create lp/lv failed"
vdlvm_a -c "$rp_conf" vol create rp/rv --size 8MiB >/dev/null || fail "vol create rp/rv failed"

start_tgtd --netns "$A" --addr "$netns_a_addr"
a_ctl=$tgtd_ctl
tgt_target_new 1 lv || fail "nodea: cannot create target 1"
tgt_lun_new 1 1 vdlvm lp/lv "conf=$lp_conf" || fail "nodea: cannot export lp/lv"
url_lv=$(iscsi_url 1 1)
tgt_target_new 2 rv || fail "nodea: cannot create target 2"
tgt_lun_new 2 1 vdlvm rp/rv "conf=$rp_conf" || fail "nodea: cannot export rp/rv"
# Data in lp/lv's page cache, so that reads are quick whatever the disk.
in_a timeout 60 qemu-io -f raw -c "write -P 0x42 0 32M" "$url_lv" >/dev/null ||
    fail "writing lp/lv failed"
vdlvm_a status rp >/dev/null || fail "status rp through the control socket failed"

# Baseline: the same reads with nothing else going on.
in_a timeout 60 "$BUILD/vdload" read --qd 1 --bs 4k --time 5 --range 0:$((32 * MiB)) \
    --json --quiet "$url_lv" > "$tmp/base.json" 2> "$tmp/base.err" ||
    fail "baseline reads on lp/lv failed: $(cat "$tmp/base.err")"
base_p99=$(grep -o '"p99":[0-9.]*' "$tmp/base.json" | head -1 | cut -d: -f2)
base_max=$(grep -o '"max":[0-9.]*' "$tmp/base.json" | head -1 | cut -d: -f2)
note "baseline reads on lp/lv: p99 ${base_p99} us, max ${base_max} us"

# ---- nodeb goes silent -----------------------------------------------------------
netns_link_silent || fail "cannot make nodeb silent"
note "nodeb silent: $netns_silent_how"

in_a timeout 120 "$BUILD/vdload" read --qd 1 --bs 4k --time 30 --range 0:$((32 * MiB)) \
    --json --quiet --started "$tmp/reads.started" "$url_lv" > "$tmp/reads.json" 2> "$tmp/reads.err" &
reader=$!
cleanup_fn _stop_pid "$reader"
wait_started "$tmp/reads.started" "$reader" ||
    fail "the reader did not start: $(cat "$tmp/reads.err")"

# 1. commands on the slow pool, in the background
t_create=$(now)
( vdlvm_a vol create rp/new --size 4MiB > "$tmp/create.out" 2>&1; echo $? > "$tmp/create.rc"
  elapsed "$t_create" "$(now)" > "$tmp/create.secs" ) &
creator=$!
cleanup_fn kill_quiet "$creator"
sleep 0.5
( vdlvm_a status rp > "$tmp/status.out" 2>&1; echo $? > "$tmp/status.rc" ) &
stater=$!
cleanup_fn kill_quiet "$stater"
sleep 1
[ ! -e "$tmp/create.rc" ] ||
    fail "vol create on rp did not wait for nodeb (the test needs it to): $(cat "$tmp/create.out")"

# 2. close pool rp: tgtadm answers at once
t0=$(now)
tgt_lun_delete 2 1 || fail "deleting rp/rv's LUN failed"
t_del=$(elapsed "$t0" "$(now)")
note "tgtadm LUN delete of rp/rv answered in ${t_del}s while nodeb is silent"
t0=$(now)
timeout 10 tgtadm -C "$a_ctl" --mode target --op show >/dev/null || fail "tgtadm show failed"
t_show=$(elapsed "$t0" "$(now)")

wait "$reader" || fail "the reader on lp/lv failed: $(cat "$tmp/reads.err")"
wait "$creator" || true
wait "$stater" || true
max_us=$(grep -o '"max":[0-9.]*' "$tmp/reads.json" | head -1 | cut -d: -f2)
p99_us=$(grep -o '"p99":[0-9.]*' "$tmp/reads.json" | head -1 | cut -d: -f2)
ios=$(grep -o '"ios":[0-9]*' "$tmp/reads.json" | head -1 | cut -d: -f2)
[ -n "$max_us" ] || fail "no latency from the reader: $(cat "$tmp/reads.json" "$tmp/reads.err")"
create_secs=$(cat "$tmp/create.secs")
note "vol create rp/new: exit $(cat "$tmp/create.rc") after ${create_secs}s: $(head -c 300 "$tmp/create.out")"
note "status rp: exit $(cat "$tmp/status.rc")"
note "RESULT reads on lp/lv while rp's remote device was silent: ${ios:-?} reads, p99 ${p99_us} us (baseline ${base_p99} us), max ${max_us} us (baseline ${base_max} us, bound ${READ_BOUND_MS} ms)"
le "$create_secs" 3 &&
    fail "vol create on rp took only ${create_secs}s: it did not wait on the silent device, so the test proves nothing"
le "$max_us" $((READ_BOUND_MS * 1000)) ||
    fail "a read on lp/lv took $((${max_us%.*} / 1000)) ms while a command or close of pool rp waited on the network: the main thread was held"
le "$t_del" 2 || fail "deleting rp/rv's LUN took ${t_del}s: its pool was closed on the main thread"
le "$t_show" 2 || fail "tgtadm show took ${t_show}s"

# ---- the link comes back: rp opens again, both pools work ---------------------
netns_link_restore
tgt_lun_new 2 1 vdlvm rp/rv "conf=$rp_conf" || fail "re-exporting rp/rv after its background close failed"
wait_for 60 vdlvm_a status rp >/dev/null || fail "status rp fails after the link came back"
vdlvm_a vol list rp > "$tmp/list.out" || fail "vol list rp failed"
grep -q 'rp/rv' "$tmp/list.out" || fail "rp/rv missing: $(cat "$tmp/list.out")"
in_a timeout 60 qemu-io -f raw -c "read -P 0x42 0 1M" "$url_lv" > "$tmp/check.out" 2>&1 &&
    ! grep -q "failed\|Pattern verification" "$tmp/check.out" || fail "lp/lv data changed: $(cat "$tmp/check.out")"
note "done"
