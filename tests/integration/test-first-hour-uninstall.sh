#!/bin/bash
# `make uninstall-all` (tools/uninstall-all.sh) removes everything vdlvm put
# on a machine, here in private directories: programs, module, definitions,
# registry, run directory and the deb-src entry.  It refuses while a pool is
# still known (its devices keep data and headers), unless FORCE=1, and
# works without it once the pools are removed with `vdlvm pool remove`.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_vdlvm

top=$(cd "$(dirname "$0")/../.." && pwd)
root=$tmp/root
mkdir -p "$root/bin" "$root/bs" "$root/etc/apt"
cp "$VDLVM" "$BUILD/vdload" "$root/bin/"
cp "$BUILD/backing-store/bs_vdlvm.so" "$root/bs/"
export VDLVM_SRC_LIST=$root/etc/apt/vdlvm-deb-src.sources
echo "Types: deb-src" > "$VDLVM_SRC_LIST"
uninstall_all() { PATH=$root/bin:$PATH timeout 60 "$top/tools/uninstall-all.sh" "$root/bin" "$root/bs"; }

export VDLVM_CONFDIR=$tmp/etc     # (not $tmp itself: uninstall-all deletes it)
mkdir -p "$VDLVM_CONFDIR"
printf 'pool: up\ndevices:\n  - name: d0\n    path: %s\n    size: 64MiB\n' \
    "$tmp/up-d0.img" > "$VDLVM_CONFDIR/up.yaml"
vdlvm pool create "$VDLVM_CONFDIR/up.yaml" > /dev/null || fail "pool create failed"
expect_fail 1 "pools still defined; their devices keep data" uninstall_all
[ -x "$root/bin/vdlvm" ] && [ -f "$root/bs/bs_vdlvm.so" ] && [ -f "$VDLVM_CONFDIR/up.yaml" ] ||
    fail "a refused uninstall-all removed something"

vdlvm pool remove up --purge-definition > /dev/null || fail "pool remove failed"
out=$(uninstall_all 2>&1) || fail "uninstall-all failed: $out"
note "$out"
for f in "$root/bin/vdlvm" "$root/bin/vdload" "$root/bs/bs_vdlvm.so" \
         "$VDLVM_STATEDIR" "$VDLVM_RUNDIR" "$VDLVM_SRC_LIST"; do
    [ ! -e "$f" ] || fail "uninstall-all left $f"
done
[ ! -e "$VDLVM_CONFDIR" ] || fail "uninstall-all left $VDLVM_CONFDIR"
[ -d "$tmp" ] && [ -f "$tmp/up-d0.img" ] || fail "uninstall-all removed more than its own files"
note "done"
