#!/bin/bash
# Issue 8, defect 5: a remote write that timed out must not land on the peer
# after a newer write to the same blocks.  The peer's tgtd holds the old
# write in its backing store (LD_PRELOAD shim on pwrite), the initiator
# times out and reconnects, a newer write to the same blocks is retried
# until it succeeds, and the old write is released meanwhile: the peer
# must end up holding the newer data.  (Before the fix the device came back
# at once, the newer write landed, and the released old write overwrote it.)
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
source "$(dirname "$0")/remote-common.sh"

mirror_requires
remote_tools_build
mirror_nodes_setup
remote_peer_start b 64M --shim

out=$(in_a timeout 200 "$REMOTE_TOOL" stale-write "$url_b" 2000 "$tmp/shim-b") ||
    fail "remote-tool stale-write failed: $out"
note "$(tr '\n' ' ' <<<"$out")"
get() { sed -n "s/.*\<$1=\([^ ]*\).*/\1/p" <<<"$out" | tail -n 1; }

[ "$(get old_held)" = 1 ] || fail "the peer did not hold the old write"
[ "$(get old_write)" != 0 ] || fail "the old write succeeded although the peer held it"
[ "$(get old_landed)" = 1 ] || fail "the old write never landed on the peer after its release"
[ "$(get new_write_ok)" = 1 ] || fail "the newer write never succeeded"
[ "$(get new_before_release)" = 0 ] ||
    fail "the newer write completed while the timed-out write was still pending on the peer"
[ "$(get holds)" = new ] || fail "the device reads back '$(get holds)' data, not the newer write"
# What the peer's disk holds (1 MiB into the LUN, 64 KiB).
peer=$(dd if="$tmp/nodeb-disk.img" bs=64K skip=16 count=1 2>/dev/null | tr -d 'N' | wc -c)
[ "$peer" = 0 ] || fail "the peer's disk does not hold the newer write ($peer other bytes)"
note "RESULT the timed-out write landed before the newer one; the peer holds the newer data"
