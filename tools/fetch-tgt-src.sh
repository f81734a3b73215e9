#!/bin/bash
# Usage: tools/fetch-tgt-src.sh DIR
#
# Unpack the Debian source package of exactly the installed tgt version into
# DIR (so that DIR/usr/*.h exist) and touch DIR/.stamp.  tgt ships no headers
# and has no ABI versioning: bs_vdlvm.so must be compiled against the headers
# of the very tgtd that loads it.  Nothing of tgt is committed (DIR is under
# build/).  Needs the deb-src entry written by tools/install-deps.sh.
set -euo pipefail

say() { echo "fetch-tgt-src: $*" >&2; }
die() { say "$*"; exit 1; }

[ $# = 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1

version=$(dpkg-query -W -f='${Version}' tgt 2>/dev/null || true)
[ -n "$version" ] || die "tgt is not installed; run tools/install-deps.sh (or make deps)"
# Upstream version without epoch and Debian revision, e.g. 1:1.0.85-1+deb12u1 -> 1.0.85
upstream=${version#*:}
upstream=${upstream%-*}

if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$version" ] && [ -f "$dir/usr/tgtd.h" ]; then
    touch "$dir/.stamp"    # newer than its make prerequisites again
    exit 0
fi

command -v dpkg-source >/dev/null || die "dpkg-source not found; install dpkg-dev (tools/install-deps.sh)"

work=$(mktemp -d "${TMPDIR:-/tmp}/vdlvm-tgtsrc.XXXXXX")
trap 'rm -rf "$work"' EXIT

download() {
    (cd "$work" && apt-get source -q --download-only "tgt=$version") >"$work/apt.log" 2>&1
}

say "fetching the source of tgt $version"
if ! download; then
    # The package lists may predate the deb-src entry: refresh once and retry.
    say "refreshing package lists (apt-get update)"
    apt-get update -q >"$work/update.log" 2>&1 || { cat "$work/update.log" >&2; die "apt-get update failed"; }
    if ! download; then
        sed 's/^/  /' "$work/apt.log" >&2
        die "the installed tgt is version $version, and the source of exactly that version is needed (bs_vdlvm.so is built against tgtd's own headers), but apt-get source cannot get tgt=$version; check the deb-src entry in /etc/apt/sources.list.d/vdlvm-deb-src.sources, or install a tgt version whose source is available"
    fi
fi

dsc=$(ls "$work"/tgt_*.dsc 2>/dev/null | head -n1)
[ -n "$dsc" ] || die "apt-get source gave no .dsc for tgt=$version"
# Make sure what we got is the installed version, not a newer one.
got=$(sed -n 's/^Version: //p' "$dsc" | head -n1)
[ "$got" = "$version" ] || die "the installed tgt is version $version but the source found is $got; the source of exactly $version is needed"

rm -rf "$dir.tmp"
mkdir -p "$(dirname "$dir")"
(cd "$work" && dpkg-source -x "$(basename "$dsc")" src) >"$work/x.log" 2>&1 ||
    { sed 's/^/  /' "$work/x.log" >&2; die "dpkg-source -x failed for $dsc"; }
[ -f "$work/src/usr/tgtd.h" ] || die "unpacked tgt $version has no usr/tgtd.h"
mv "$work/src" "$dir.tmp"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
printf '%s\n' "$version" > "$dir/.stamp"
say "tgt $version (upstream $upstream) unpacked in $dir"
