#!/bin/bash
# Issue 8, defect 7 seen from outside: one unreachable device must not fail
# SYNCHRONIZE CACHE on LUNs that do not map it.  Pool 'fs': a0 (1 GiB local
# file on nodea) and b0 (nodeb's LUN); volume loc lies on a0 only, volume
# rem spans a0 and b0.  rem's extents on b0 are written (not flushed), then
# nodeb goes silent: `qemu-io -c flush` on loc must succeed, quickly (its
# data is all on a0).  On main as of 34e62d5 a linear volume's flush
# flushed every device of the pool, so loc's flush failed (0C00h); it needs
# the pool helper's fix of defect 7 (a flush covers what the volume maps).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/mirror-common.sh"
source "$(dirname "$0")/remote-common.sh"
mirror_requires
requires qemu-io --version

mirror_nodes_setup
remote_peer_start b 256M
conf=$tmp/fs.yaml
cat > "$conf" <<EOF2
pool: fs
extent_size: 4MiB
devices:
  - name: a0
    path: $tmp/nodea-a0.img
    size: 1GiB
    node: nodea
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: 2000ms
EOF2
vdlvm_a pool create "$conf" || fail "pool create failed"
# 4 extents all land on the 1 GiB a0; 16 extents give b0 some.
vdlvm_a vol create fs/loc --size 16MiB || fail "vol create loc failed"
vdlvm_a vol create fs/rem --size 64MiB || fail "vol create rem failed"
vdlvm_a status fs > "$tmp/st.out" 2>&1 || fail "status failed"
grep -E '^ *loc ' "$tmp/st.out" | grep -q b0 && fail "loc has extents on b0: $(cat "$tmp/st.out")"
run=$(grep -E '^ *rem ' "$tmp/st.out" | grep -o 'le [0-9]*\(-[0-9]*\)\{0,1\} -> b0' | head -n 1)
[ -n "$run" ] || fail "rem has no extent on b0: $(cat "$tmp/st.out")"
le0=$(sed 's/le \([0-9]*\).*/\1/' <<<"$run")
mirror_tgtd_start fs/loc
tgt_lun_new 1 2 vdlvm fs/rem "conf=$conf" || fail "cannot export fs/rem"
url_rem=${url_a%/1}/2

qio() { # URL CMD...: 0 when no command failed (output in $tmp/qio.out)
    local url=$1 args=() c rc=0
    shift
    for c in "$@"; do args+=(-c "$c"); done
    in_a timeout 120 qemu-io -f raw "${args[@]}" "$url" > "$tmp/qio.out" 2>&1 || rc=$?
    grep -q "failed" "$tmp/qio.out" && [ "$rc" = 0 ] && rc=1
    return "$rc"
}
qio "$url_a" "write -P 0x11 0 1M" "flush" || fail "loc: write + flush failed: $(cat "$tmp/qio.out")"
# rem's extent on b0 written, not flushed (vdload sends no SYNCHRONIZE
# CACHE; qemu-io would flush when it closes).
vdload_a write --bs 64k --qd 4 --count 16 --range $(( le0 * 4 * MiB )):$(( 4 * MiB )) \
    --quiet "$url_rem" > /dev/null || fail "writing rem's extent on b0 failed"

node_silent b || fail "cannot silence node b"
note "node b silent ($silent_how)"
t0=$(now)
qio "$url_a" "write -P 0x12 1M 64k" "flush" ||
    fail "SYNCHRONIZE CACHE of loc (all on a0) failed while b0 is silent: $(cat "$tmp/qio.out")"
t=$(elapsed "$t0" "$(now)")
awk -v a="$t" 'BEGIN { exit !(a <= 1.5) }' || fail "SYNCHRONIZE CACHE of loc took $t s while b0 is silent"
qio "$url_a" "read -P 0x12 1M 64k" || fail "loc: read back failed: $(cat "$tmp/qio.out")"
node_restore b
note "RESULT loc's write + flush succeeded in $t s while b0 (which loc does not map) was silent"
