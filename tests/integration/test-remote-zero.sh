#!/bin/bash
# The iscsi driver's zero op (issue 8, defect 16's building block): WRITE
# SAME(16) of a zero block, split at the target's limit (8 MiB per command
# here), with the UNMAP bit only when the LUN reads unmapped blocks as zeroes
# (LBPRZ).  On a thick LUN of a peer tgtd: a 20 MiB range (3 commands) reads
# back as zeroes and the bytes around it are untouched.  On a thin LUN
# (thin_provisioning=1: LBPME and LBPRZ set) the same, and the peer's file
# gives the space back (UNMAP punched a hole).  (Before: no zero op at all.)
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
source "$(dirname "$0")/remote-common.sh"
mirror_requires
remote_tools_build
mirror_nodes_setup
remote_peer_start b 96M
truncate -s 96M "$tmp/nodeb-thin.img"
tgt_lun_new 1 2 rdwr "$tmp/nodeb-thin.img" || fail "cannot export the thin LUN"
tgt_adm --lld iscsi --mode logicalunit --op update --tid 1 --lun 2 \
    --params thin_provisioning=1 || fail "cannot make LUN 2 thin"
url_thin=${url_b%/1}/2
OFF=$((8 * MiB)) LEN=$((20 * MiB))

out=$(in_a timeout 120 "$REMOTE_TOOL" zero "$url_b" $OFF $LEN 2>&1) ||
    fail "thick LUN: zero op failed or left data: $out"
note "thick LUN: $(tr '\n' ' ' <<<"$out")"

out=$(in_a timeout 120 "$REMOTE_TOOL" zero "$url_thin" $OFF $LEN 2>&1) ||
    fail "thin LUN: zero op failed or left data: $out"
note "thin LUN: $(tr '\n' ' ' <<<"$out")"
alloc=$(( $(stat -c %b "$tmp/nodeb-thin.img") * 512 / MiB ))
# 22 MiB were written (1 MiB on each side of the range stays).
[ "$alloc" -le 8 ] || fail "thin LUN: the peer's file still holds $alloc MiB after zeroing 20 of 22 MiB (no UNMAP?)"
note "RESULT zero op: thick LUN zeroed by WRITE SAME, thin LUN zeroed and unmapped ($alloc MiB left allocated of 22)"
