#!/bin/bash
# The systemd files of vdlvm pass `systemd-analyze verify` (no message at
# all) together with the installed tgt.service they extend: the activation
# unit (as make install writes it, naming the built vdlvm) and the
# tgt.service drop-in; the activation runs before tgt.service, which wants
# it.  test-deb.sh verifies the installed package's files the same way.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_file "$VDLVM"
requires command -v systemd-analyze
[ -f /lib/systemd/system/tgt.service ] || skip "tgt.service is not installed (tools/install-deps.sh installs tgt)"

units=$tmp/units
mkdir -p "$units/tgt.service.d"
sed "s|@BINDIR@|$BUILD|g" "$top_srcdir/systemd/vdlvm-activate.service.in" > "$units/vdlvm-activate.service"
cp "$top_srcdir/systemd/tgt.service.d/vdlvm.conf" "$units/tgt.service.d/"
# Our folder first, then the system's (the trailing ':').
SYSTEMD_UNIT_PATH=$units: systemd-analyze verify --man=no vdlvm-activate.service tgt.service \
    > "$tmp/verify.out" 2>&1 || fail "systemd-analyze verify failed: $(cat "$tmp/verify.out")"
[ ! -s "$tmp/verify.out" ] || fail "systemd-analyze verify: $(cat "$tmp/verify.out")"
grep -qx "ExecStart=$BUILD/vdlvm activate" "$units/vdlvm-activate.service" || fail "ExecStart does not name vdlvm activate"
grep -qx "Before=tgt.service" "$units/vdlvm-activate.service" || fail "the activation is not ordered before tgt.service"
grep -qx "Wants=vdlvm-activate.service" "$units/tgt.service.d/vdlvm.conf" || fail "tgt.service does not want the activation"
grep -qx "After=vdlvm-activate.service" "$units/tgt.service.d/vdlvm.conf" || fail "tgt.service is not ordered after the activation"
# The unit's commands work as written (private folders): activate makes
# the paths, deactivate removes them.
conf=$(make_pool_conf u0 1 64MiB)
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
vdlvm vol create u0/v0 --size 8MiB > /dev/null || fail "vol create failed"
start=$(sed -n 's/^ExecStart=//p' "$units/vdlvm-activate.service")
stop=$(sed -n 's/^ExecStop=//p' "$units/vdlvm-activate.service")
$start > /dev/null || fail "'$start' failed"
[ -f "$VDLVM_RUNDIR/vol/u0/v0" ] || fail "'$start' did not make $VDLVM_RUNDIR/vol/u0/v0"
$stop > /dev/null || fail "'$stop' failed"
[ ! -e "$VDLVM_RUNDIR/vol" ] || fail "'$stop' left $(find "$VDLVM_RUNDIR/vol")"
note "units verified; ExecStart/ExecStop activate and deactivate"
