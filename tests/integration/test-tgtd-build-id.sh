#!/bin/bash
# bs_vdlvm.so registers only in the tgtd it was built for: a tgtd whose GNU
# build ID differs (here a copy of the installed tgtd with one byte of its
# build ID changed, as any other tgt build would have) does not get the
# vdlvm backing store, and its log says why and how to fix it; the
# installed tgtd loads it.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires command -v readelf
requires command -v perl

id=$(readelf -n /usr/sbin/tgtd | sed -n 's/.*Build ID: //p')
[ -n "$id" ] || skip "/usr/sbin/tgtd has no GNU build ID"
grep -qaF "$id" "$BSDIR/bs_vdlvm.so" ||
    fail "the built module does not hold the build ID $id of /usr/sbin/tgtd (rebuild it: make)"

mkdir -p "$tmp/bin"
cp /usr/sbin/tgtd "$tmp/bin/tgtd"
ID=$id perl -0777 -pi -e '
    my $id = pack("H*", $ENV{ID});
    my $other = $id; substr($other, 0, 1) = chr(ord(substr($id, 0, 1)) ^ 0xff);
    s/\Q$id\E/$other/ or die "build ID not found\n";' "$tmp/bin/tgtd" </dev/null
other=$(readelf -n "$tmp/bin/tgtd" | sed -n 's/.*Build ID: //p')
[ -n "$other" ] && [ "$other" != "$id" ] || fail "could not change the copy's build ID ($other)"

conf=$(make_pool_conf p0 1 64MiB)
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
vdlvm vol create p0/v0 --size 8MiB > /dev/null || fail "vol create failed"

# Another tgtd build: no vdlvm backing store.
PATH=$tmp/bin:$PATH start_tgtd
tgt_target_new 1 v0 || fail "cannot create a target"
if tgt_lun_new 1 1 vdlvm p0/v0 2>/dev/null; then
    fail "a tgtd of another build exported a vdlvm LUN"
fi
grep -q "not loading it: rebuild vdlvm" "$tgtd_log" ||
    fail "the log does not say why: $(cat "$tgtd_log")"
note "refused by tgtd build $other: $(grep -o 'bs_vdlvm.so was built.*' "$tgtd_log" | head -1)"
stop_tgtd

# The installed tgtd: loaded.
start_tgtd
tgt_target_new 1 v0 || fail "cannot create a target"
tgt_lun_new 1 1 vdlvm p0/v0 || fail "the installed tgtd did not export the vdlvm LUN"
! grep -q "not loading" "$tgtd_log" || fail "the installed tgtd refused the module"
