#!/bin/bash
# integration: solo
# The iscsi driver's asynchronous op (bdev submit, issue 14), driven
# directly by remote-tool against a stock tgtd peer (nodeb) from nodea:
# 1. check: 64 writes in flight (4 KiB .. 2 MiB, split at the target's
#    limit, some FUA) beside a thread of synchronous writes and reads on the
#    same device, a flush bio, 64 reads in flight: equal data, every done
#    exactly once, never inside submit; unaligned/empty bios -EAGAIN.
# 2. silent: qd 32 4 KiB writes; nodeb goes silent (netem loss or a
#    blackhole route): every bio in flight fails within the timeout (no
#    submit-to-done time above timeout + 1.5 s), submit answers -EAGAIN
#    while the device reconnects; nodeb back: writes succeed again, the
#    reconnect is counted.
# 3. close with 64 1 MiB writes in flight, peer well and peer silent: every
#    done has run once when close returns, and close returns promptly.
# 4. (SUBMIT_BENCH=1) qd 32 4 KiB random writes through submit vs. 32
#    threads of pwrite, 3 runs each (medians in the note).
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
source "$(dirname "$0")/remote-common.sh"
mirror_requires
remote_tools_build
SECONDS=0
TIMEOUT_MS=2000

mirror_nodes_setup
remote_peer_start b 256M
tool() { in_a timeout 120 "$REMOTE_TOOL" submit "$url_b" "$TIMEOUT_MS" "$@"; }

# ---- 1: many bios in flight, data, flush -----------------------------------
out=$(tool check 2>&1) || fail "check failed: $out"
note "check: $(tr '\n' ' ' <<<"$out")"

# ---- 2: the peer goes silent under load, then comes back --------------------
d=$tmp/silent
mkdir -p "$d"
tool silent "$d" >"$tmp/silent.out" 2>&1 &
tool_pid=$!
cleanup_fn kill_quiet "$tool_pid"
wait_for 20 test -e "$d/loaded" || fail "the load did not start: $(cat "$tmp/silent.out")"
node_silent b || fail "cannot silence node b"
t0=$(now)
note "node b silent ($silent_how)"
wait_for 20 test -e "$d/failed" || fail "no bio failed with node b silent: $(cat "$tmp/silent.out")"
note "first bio failed $(elapsed "$t0" "$(now)")s after the silence"
sleep 1
node_restore b
wait "$tool_pid" && rc=0 || rc=$?
note "silent: $(tr '\n' ' ' <"$tmp/silent.out")"
[ "$rc" = 0 ] || fail "silent peer: $(cat "$tmp/silent.out")"
grep -q 'reconnects=[1-9]' "$tmp/silent.out" || fail "the reconnect was not counted"

# ---- 3: close with bios in flight --------------------------------------------
d=$tmp/close1
mkdir -p "$d" && touch "$d/go"
out=$(tool close "$d" 2>&1) || fail "close (peer well) with bios in flight: $out"
note "close, peer well: $out"
d=$tmp/close2
mkdir -p "$d"
tool close "$d" >"$tmp/close2.out" 2>&1 &
tool_pid=$!
wait_for 20 test -e "$d/opened" || fail "close test: open failed: $(cat "$tmp/close2.out")"
node_silent b || fail "cannot silence node b"
touch "$d/go"
wait "$tool_pid" && rc=0 || rc=$?
node_restore b
note "close, peer silent: $(cat "$tmp/close2.out")"
[ "$rc" = 0 ] || fail "close (peer silent) with bios in flight: $(cat "$tmp/close2.out")"
cs=$(sed -n 's/.*close_s=\([0-9.]*\).*/\1/p' "$tmp/close2.out")
awk -v c="$cs" -v t="$TIMEOUT_MS" 'BEGIN { exit !(c < t / 1000 + 1) }' ||
    fail "close with a silent peer took ${cs}s"

# ---- 4: a measurement (optional) -----------------------------------------------
if [ "${SUBMIT_BENCH:-0}" = 1 ]; then
    a=() s=()
    for i in 1 2 3; do
        out=$(tool bench 32 4 2>&1) || fail "bench: $out"
        a+=("$(sed -n 's/.*submit_iops=\([0-9]*\).*/\1/p' <<<"$out")")
        s+=("$(sed -n 's/.*pwrite_threads_iops=\([0-9]*\).*/\1/p' <<<"$out")")
    done
    med() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
    note "RESULT 4 KiB random writes qd 32, one peer: submit ${a[*]} (median $(med "${a[@]}")) IOPS, 32 pwrite threads ${s[*]} (median $(med "${s[@]}")) IOPS; load $(cut -d' ' -f1-3 /proc/loadavg)"
fi
note "PASS (${SECONDS}s)"
