#!/bin/bash
# Pools are known by name wherever they are defined:
#   - a pool created with -c FILE outside the configuration directory is
#     remembered: `pool list`, `status` without argument and `status POOL`
#     find it, before, while and after a tgtd holds it;
#   - `-c FILE` that does not exist is an error (2) even while a tgtd holds
#     the pool; `status nosuchpool` says "no such pool" and lists the known;
#   - `pool remove` is refused while held (4) and while volumes exist (1),
#     works with --force, wipes the devices, forgets the pool and deletes
#     the definition only with --purge-definition;
#   - `--version` and `--help` (the exit-code table).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_vdlvm

defs=$tmp/defs
mkdir "$defs"
# One pool in the configuration directory, one defined elsewhere.
make_pool_conf etcp 1 64MiB > /dev/null
vdlvm pool create "$tmp/etcp.yaml" > /dev/null || fail "pool create etcp failed"
cat > "$defs/mine.yaml" <<EOF
pool: mine
devices:
  - name: m0
    path: $tmp/mine-m0.img
    size: 64MiB
  - name: m1
    path: $tmp/mine-m1.img
    size: 64MiB
EOF
vdlvm -c "$defs/mine.yaml" pool create > /dev/null || fail "pool create -c mine failed"
vdlvm vol create mine/v0 --size 8MiB > /dev/null || fail "vol create without -c on a remembered pool failed"

out=$(vdlvm pool list) || fail "pool list failed"
note "pool list:"$'\n'"$out"
grep -Eq "^etcp +confdir +- +$tmp/etcp.yaml" <<<"$out" || fail "pool list misses etcp: $out"
grep -Eq "^mine +registry +- +$defs/mine.yaml" <<<"$out" || fail "pool list misses mine: $out"
json=$(vdlvm pool list --json) || fail "pool list --json failed"
grep -q "{\"pool\":\"mine\",\"definition\":\"$defs/mine.yaml\",\"from\":\"registry\",\"held_by\":null}" <<<"$json" ||
    fail "pool list --json: $json"
out=$(vdlvm status) || fail "status without argument failed"
grep -q "^pool 'etcp'" <<<"$out" && grep -q "^pool 'mine'" <<<"$out" ||
    fail "status without argument does not show both pools: $out"
vdlvm status --json | grep -q '"pool":"mine"' || fail "status --json misses mine"

expect_fail 1 "pool 'nosuchpool': no such pool.*known pools: etcp, mine" vdlvm status nosuchpool
expect_fail 2 "/nonexist.*No such file" vdlvm -c /nonexist status mine

# ---- held by a tgtd -----------------------------------------------------------------
if ( requires_tgtd ) >/dev/null 2>&1; then
    start_tgtd
    tgt_target_new 1 mine || fail "cannot create target"
    tgt_lun_new 1 1 vdlvm mine/v0 "conf=$defs/mine.yaml" || fail "cannot export mine/v0"
    vdlvm status mine > /dev/null || fail "status mine while tgtd holds it failed"
    out=$(vdlvm pool list)
    grep -Eq "^mine +registry +tgtd pid $tgtd_pid " <<<"$out" || fail "pool list does not name the tgtd holding mine: $out"
    expect_fail 2 "/nonexist.*No such file" vdlvm -c /nonexist status mine
    expect_fail 4 "pool 'mine': held by tgtd pid $tgtd_pid" vdlvm pool remove mine --force
    tgt_lun_delete 1 1 || fail "cannot delete the LUN"
    # The pool is closed in the background; then vdlvm opens it itself.
    wait_for 30 sh -c "! '$VDLVM' pool list | grep -Eq '^mine +registry +tgtd'" ||
        fail "pool list still shows mine held after its LUN was deleted"
    stop_tgtd
    vdlvm status mine > /dev/null || fail "status mine fails once the tgtd let it go"
fi

# ---- pool remove ------------------------------------------------------------------------
expect_fail 1 "pool 'mine': has 1 volume; remove them .* or give --force" vdlvm pool remove mine
vdlvm status mine > /dev/null || fail "a refused pool remove changed the pool"
out=$(vdlvm pool remove mine --force) || fail "pool remove --force failed"
note "$out"
grep -q "definition $defs/mine.yaml kept" <<<"$out" || fail "pool remove does not say the definition is kept: $out"
[ -f "$defs/mine.yaml" ] || fail "pool remove without --purge-definition deleted the definition"
head -c 8 "$tmp/mine-m0.img" | grep -q VDLVMDV1 && fail "pool remove left the vdlvm header on m0"
! vdlvm pool list | grep -q '^mine ' || fail "pool list still shows mine after pool remove"
expect_fail 1 "no such pool" vdlvm status mine
# The definition still works to create the pool anew, without --force.
vdlvm pool create "$defs/mine.yaml" > /dev/null || fail "re-creating mine on its freed devices failed"
vdlvm pool remove mine --purge-definition > /dev/null || fail "pool remove --purge-definition failed"
[ ! -e "$defs/mine.yaml" ] || fail "--purge-definition kept the definition"
expect_fail 2 "pool remove: missing POOL" vdlvm pool remove

# ---- --version, --help ------------------------------------------------------------------------
out=$(vdlvm --version) || fail "--version failed"
note "--version: $out"
grep -Eq '^vdlvm [0-9]+\.[0-9]+' <<<"$out" || fail "--version does not print vdlvm's version: $out"
want=$(dpkg-query -W -f='${Version}' tgt 2>/dev/null || echo unknown)
grep -Fq "built for tgt $want" <<<"$out" || fail "--version does not name the tgt ($want) it was built for: $out"
help=$(vdlvm --help)
for code in 0 1 2 3 4; do
    grep -Eq "^  $code  " <<<"$help" || fail "--help lacks exit code $code"
done
grep -q "pool remove POOL" <<<"$help" && grep -q "pool list" <<<"$help" ||
    fail "--help lacks pool list/remove"
note "done"
