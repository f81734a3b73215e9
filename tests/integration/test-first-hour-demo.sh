#!/bin/bash
# The demo (tools/demo.sh), in private folders and on free ports, with the
# built module bind-mounted in a private mount namespace:
#   - it shows the LUN's exact size (2147483648 bytes for the 2 GiB volume),
#     not a rounded one;
#   - the "Try:" command it prints works, also on a second run (it names a
#     volume that does not exist yet);
#   - stop --purge removes the pool: nothing remembers it.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v iscsi-readcapacity16

top=$(cd "$(dirname "$0")/../.." && pwd)
export VDLVM_DEMO_DIR=$tmp/demo VDLVM_DEMO_PIDFILE=$tmp/demo-tgtd.pid
export VDLVM_DEMO_CTL=$(pick_ctl_port) VDLVM_DEMO_PORT=$(pick_port "")
export PATH=$BUILD:$PATH      # the built vdlvm
demo() { timeout 120 unshare -m sh -c 'mount --bind "$0" /usr/lib/tgt/backing-store && exec "$@"' \
             "$BSDIR" "$top/tools/demo.sh" "$@"; }
demo_kill() {   # last resort: the demo's tgtd by its pid file
    local pid
    pid=$(cat "$VDLVM_DEMO_PIDFILE" 2>/dev/null) || return 0
    "$top/tools/demo.sh" stop >/dev/null 2>&1 || true
    kill -0 "$pid" 2>/dev/null && _stop_pid "$pid"
    return 0
}
cleanup_fn demo_kill

demo start > "$tmp/start1.out" 2> "$tmp/start1.err" || fail "demo start failed: $(cat "$tmp/start1.err")"
note "demo start:"$'\n'"$(cat "$tmp/start1.out")"
grep -q '^2147483648 bytes = 2048 MiB$' "$tmp/start1.out" ||
    fail "the demo does not show the 2 GiB LUN's exact size: $(cat "$tmp/start1.out")"
grep -q 'iscsi-ls' "$tmp/start1.out" && fail "the demo still shows iscsi-ls (rounded sizes)"
hint() { sed -n 's/^ *\(vdlvm vol create demo\/[^#]*[^ #]\) *# live.*/\1/p' "$1"; }
try=$(hint "$tmp/start1.out")
[ "$try" = "vdlvm vol create demo/vol1 --size 512MiB" ] || fail "the demo suggests '$try'"
$try > /dev/null || fail "the demo's Try command failed: $try"

# Second run: already running, and the hint moves on to a new name.
demo start > "$tmp/start2.out" 2> "$tmp/start2.err" || fail "second demo start failed: $(cat "$tmp/start2.err")"
try2=$(hint "$tmp/start2.out")
[[ $try2 == "vdlvm vol create demo/vol2 --size "*MiB ]] || fail "the second run suggests '$try2'"
$try2 > /dev/null || fail "the second run's Try command failed: $try2"
note "second run suggests: $try2"

"$top/tools/demo.sh" stop --purge > "$tmp/stop.out" 2>&1 || fail "demo stop --purge failed: $(cat "$tmp/stop.out")"
note "$(cat "$tmp/stop.out")"
[ ! -e "$VDLVM_DEMO_DIR" ] && [ ! -e "$VDLVM_CONFDIR/demo.yaml" ] || fail "stop --purge left files"
! vdlvm pool list | grep -q '^demo ' || fail "pool list still knows demo after stop --purge"
note "done"
