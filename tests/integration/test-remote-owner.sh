#!/bin/bash
# Issue 8, one writer per pool across hosts, with three nodes in network
# namespaces: nodea (host 1: tgtd with the module, owner of the pool),
# nodeb and nodec (peers serving b0 and c0 with stock tgtd); host 2 runs on
# nodec with its own host name (UTS namespace) and its own VDLVM_RUNDIR,
# and reaches nodeb over a third link (192.0.2.0/24).
#   0. a handle that reserved a free LUN and wrote nothing leaves it free;
#      after host 1's vdlvm closed the pool cleanly, host 2 is refused
#      (the reservation is kept on close);
#   1. host 2 opening the pool (vol create) is refused, naming host 1;
#      host 2's own writes to the LUN are refused by the peer;
#   2. pool takeover on host 2 fences host 1: host 1's next write through
#      its LUN fails; host 2 then owns the pool (vol create works).
# (Before the reservation, host 2's vol create succeeded.)
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
source "$(dirname "$0")/remote-common.sh"

mirror_requires
requires qemu-io --version
remote_tools_build
mirror_nodes_setup
remote_peer_start b 96M
remote_peer_start c 96M
remote_link_bc

conf=$tmp/own.yaml
cat > "$conf" <<EOF2
pool: own
extent_size: 4MiB
devices:
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: 3000ms
  - name: c0
    iscsi: $url_c
    node: nodec
    timeout: 3000ms
EOF2
# A handle that reserved a free LUN and wrote nothing gives it back at
# close: host 1 looks at b0, then host 2 can open it.
in_a timeout 60 "$REMOTE_TOOL" open "$url_b" 3000 || fail "host 1 cannot open b0"
as_host hostc "$NS_C" timeout 60 "$REMOTE_TOOL" open "$url_b" 3000 ||
    fail "host 2 cannot open b0 after host 1 only looked at it (reservation not given back)"
vdlvm_a pool create "$conf" || fail "pool create on host 1 failed"
vdlvm_a vol create own/v --size 16MiB || fail "vol create on host 1 failed"
host1=$(hostname | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9.-')
[ -n "$host1" ] || host1=localhost
# Names of at most 7 characters are readable from the reservation key.
if [ ${#host1} -le 7 ]; then want1="host '$host1'"; else want1="reservation key 0x"; fi
host2() { as_host hostc "$NS_C" timeout 120 "$VDLVM" "$@"; }
# 0. host 1's vdlvm closed the pool cleanly: the reservation stays.
expect_fail nz "reserved by $want1" host2 status own
mirror_tgtd_start own/v

# write_a OFF BYTE: one 64 KiB write through host 1's LUN; 0 when it worked
write_a() {
    local rc=0
    in_a timeout 60 qemu-io -f raw -c "write -P $2 $1 64k" "$url_a" > "$tmp/wa.out" 2>&1 || rc=$?
    grep -q "failed" "$tmp/wa.out" && [ "$rc" = 0 ] && rc=1
    return "$rc"
}
write_a 0 0x11 || fail "host 1 cannot write through its LUN: $(cat "$tmp/wa.out")"

# 1. host 2 is refused, with the holder named.
expect_fail nz "reserved by $want1" host2 vol create own/w --size 4MiB
out=$(host2 vol create own/w --size 4MiB 2>&1 || true)
grep -q "pool takeover" <<<"$out" || fail "the refusal does not say how to take over: $out"
# The peer itself refuses writes that do not come from the owner.
rc=0
in_c timeout 60 qemu-io -f raw -c "write -P 0x33 0 4k" "$url_c" > "$tmp/wc.out" 2>&1 || rc=$?
grep -q "failed" "$tmp/wc.out" || [ "$rc" != 0 ] ||
    fail "a write to c0 from nodec that is not the owner's was accepted"
note "a foreign write to c0: $(head -n 1 "$tmp/wc.out")"
write_a 64k 0x12 || fail "host 1 lost its LUN after host 2 was refused: $(cat "$tmp/wa.out")"

# 2. takeover on host 2 fences host 1.
if "$VDLVM" pool takeover --help >/dev/null 2>&1 ||
   "$VDLVM" 2>&1 | grep -q "pool takeover"; then
    how="vdlvm pool takeover"
    as_host hostc "$NS_C" timeout 120 "$VDLVM" pool takeover own > "$tmp/to.out" 2>&1 ||
        fail "vdlvm pool takeover failed: $(cat "$tmp/to.out")"
else
    how="remote-tool takeover (vd_pool_takeover; no 'vdlvm pool takeover' yet)"
    as_host hostc "$NS_C" timeout 120 "$REMOTE_TOOL" takeover "$conf" > "$tmp/to.out" 2>&1 ||
        fail "takeover failed: $(cat "$tmp/to.out")"
fi
note "takeover through $how: $(tr '\n' ' ' < "$tmp/to.out")"
grep -q "over from $want1" "$tmp/to.out" || fail "the takeover does not name the old owner: $(cat "$tmp/to.out")"
t0=$(now)
if write_a 128k 0x13; then
    fail "host 1 could still write through its LUN after the takeover"
fi
note "host 1's write after the takeover failed after $(elapsed "$t0" "$(now)") s: $(grep -m1 failed "$tmp/wa.out")"
# It stays fenced (no reconnect brings it back).
sleep 1
if write_a 192k 0x14; then
    fail "host 1 could write again after being fenced"
fi
vdlvm_a status own > "$tmp/st.out" 2>&1 || true
grep -q "fenced" "$tmp/st.out" || fail "status on host 1 does not say that its devices are fenced: $(cat "$tmp/st.out")"
# host 2 owns the pool now.
host2 vol create own/w --size 4MiB > "$tmp/w.out" 2>&1 || fail "host 2 cannot use the pool after the takeover: $(cat "$tmp/w.out")"
host2 status own > "$tmp/st2.out" 2>&1 || fail "status on host 2 failed"
grep -q "w " "$tmp/st2.out" || fail "host 2 does not see its new volume: $(cat "$tmp/st2.out")"
note "RESULT host 2 refused while host 1 owned the pool (holder named); takeover fenced host 1 (its next write failed)"
