#!/bin/bash
# Usage: tools/uninstall-all.sh [BINDIR] [TGT_BSDIR]    (run by make uninstall-all)
#
# Removes everything vdlvm put on this machine: the demo (tools/demo.sh stop
# --purge), the programs and the module (as make uninstall), pool
# definitions (/etc/vdlvm), the registry and demo files (/var/lib/vdlvm),
# locks and sockets (/run/vdlvm) and the deb-src entry of
# tools/install-deps.sh.  Packages installed by install-deps (tgt, libiscsi,
# ...) stay: other software may use them.
#
# Refused while a tgtd holds a vdlvm pool, and while pools are still known
# (`vdlvm pool list`), because their devices keep their data and vdlvm
# headers: remove them first with `vdlvm pool remove POOL [--force]`, or run
# with FORCE=1 to leave those devices as they are.
set -euo pipefail

BINDIR=${1:-/usr/local/bin}
BSDIR=${2:-/usr/lib/tgt/backing-store}
CONFDIR=${VDLVM_CONFDIR:-/etc/vdlvm}
STATEDIR=${VDLVM_STATEDIR:-/var/lib/vdlvm}
RUNDIR=${VDLVM_RUNDIR:-/run/vdlvm}
SRC_LIST=${VDLVM_SRC_LIST:-/etc/apt/sources.list.d/vdlvm-deb-src.sources}

say() { echo "uninstall-all: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
here=$(cd "$(dirname "$0")" && pwd)
vdlvm=$(command -v vdlvm || true)
[ -n "$vdlvm" ] || vdlvm=$BINDIR/vdlvm

# The demo first: it is a tgtd holding pool "demo".
# (Not when the directories are overridden: the demo uses the system ones.)
if [ -z "${VDLVM_CONFDIR:-}" ] && [ -x "$here/demo.sh" ] && [ -x "$vdlvm" ]; then
    PATH=$(dirname "$vdlvm"):$PATH "$here/demo.sh" stop --purge || true
fi

if [ -x "$vdlvm" ]; then
    pools=$("$vdlvm" pool list 2>/dev/null | awk 'NR > 1 { print }' || true)
    held=$(awk '$3 != "-"' <<<"$pools" | grep -v '^$' || true)
    [ -z "$held" ] || die "pools held by a running tgtd (delete their LUNs first):
$held"
    if [ -n "$pools" ] && [ "${FORCE:-0}" != 1 ]; then
        die "pools still defined; their devices keep data and vdlvm headers:
$pools
remove them with 'vdlvm pool remove POOL [--force] [--purge-definition]', or
run 'make uninstall-all FORCE=1' to leave those devices as they are"
    fi
fi

rm -f "$BINDIR/vdlvm" "$BINDIR/vdload" "$BSDIR/bs_vdlvm.so"
rm -rf "$CONFDIR" "$STATEDIR" "$RUNDIR"
rm -f "$SRC_LIST"
say "removed $BINDIR/vdlvm, $BINDIR/vdload, $BSDIR/bs_vdlvm.so, $CONFDIR, $STATEDIR, $RUNDIR, $SRC_LIST"
say "packages installed by tools/install-deps.sh are kept (apt-get purge them if unused)"
