#!/bin/bash
# integration: long
# Bad input gets a clear message, a non-zero exit (2: bad usage or
# configuration, 1: runtime failure, 4: in use; the table of `vdlvm
# --help`) and changes nothing: `vdlvm status
# --json` and the device files are identical before and after.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_vdlvm
requires command -v sha256sum
requires command -v flock

conf=$(make_pool_conf pool0 3 64MiB 4MiB)
vdlvm pool create "$conf" >/dev/null || fail "pool create failed"
vdlvm vol create pool0/vol0 --size 32MiB >/dev/null || fail "vol create failed"
mkdir "$tmp/bad"     # definitions outside VDLVM_CONFDIR (status lists only pool0)

snapshot() {   # snapshot FILE: status of every pool + device contents
    # (without the QoS rates a serving tgtd publishes every second: shown
    # only while fresh, so they come and go without any change)
    { vdlvm status --json | sed -E 's/"rates":(null|\{[^}]*\})/"rates":-/g' &&
      sha256sum "$tmp"/pool0-d*.img; } > "$1" ||
        fail "status failed: $(cat "$1")"
}
unchanged() {  # unchanged WHAT: compare with the snapshot taken before
    snapshot "$tmp/after"
    cmp -s "$tmp/before" "$tmp/after" ||
        fail "$1 changed the pool: $(diff "$tmp/before" "$tmp/after")"
}
snapshot "$tmp/before"

# ---- broken YAML: FILE:LINE:COL, exit 2 -----------------------------------
printf 'pool: pool9\ndevices:\n  - name: d0\n    path: [unclosed\n' > "$tmp/bad/syntax.yaml"
expect_fail 2 'syntax\.yaml:[0-9]+' vdlvm pool create "$tmp/bad/syntax.yaml"
expect_fail 2 'syntax\.yaml:[0-9]+' vdlvm -c "$tmp/bad/syntax.yaml" vol create pool9/x --size 4MiB

sed 's/^extent_size:/extent_sise:/' "$conf" > "$tmp/bad/unknown.yaml"
expect_fail 2 'unknown\.yaml:2:[0-9]+.*extent_sise' vdlvm pool create "$tmp/bad/unknown.yaml"

sed 's/^extent_size: .*/extent_size: 3MiB/' "$conf" > "$tmp/bad/extent.yaml"
expect_fail 2 'extent\.yaml:2:[0-9]+' vdlvm pool create "$tmp/bad/extent.yaml"

sed 's/size: 64MiB/size: lots/' "$conf" > "$tmp/bad/size.yaml"
expect_fail 2 'size\.yaml:[0-9]+:[0-9]+' vdlvm pool create "$tmp/bad/size.yaml"

sed 's/name: d1/name: d0/' "$conf" > "$tmp/bad/dupname.yaml"
expect_fail 2 'dupname\.yaml:[0-9]+:[0-9]+.*d0' vdlvm pool create "$tmp/bad/dupname.yaml"

sed "s|pool0-d1.img|pool0-d0.img|" "$conf" > "$tmp/bad/duppath.yaml"
expect_fail 2 'duppath\.yaml:[0-9]+:[0-9]+' vdlvm pool create "$tmp/bad/duppath.yaml"
# The same new file twice, once through '..': caught at FILE:LINE too.
mkdir -p "$tmp/bad/x"
printf 'pool: pool8\ndevices:\n  - name: x0\n    path: %s\n    size: 64MiB\n  - name: x1\n    path: %s\n    size: 64MiB\n' \
    "$tmp/bad/x/y0.img" "$tmp/bad/x/../x/y0.img" > "$tmp/bad/dotdot.yaml"
expect_fail 2 "dotdot\.yaml:[0-9]+:[0-9]+: device 'x1'.*same device as device 'x0'" vdlvm pool create "$tmp/bad/dotdot.yaml"
[ ! -e "$tmp/bad/x/y0.img" ] || fail "the refused pool create left $tmp/bad/x/y0.img"
unchanged "broken YAML"

# ---- bad usage: exit 2 ------------------------------------------------------
expect_fail 2 'size' vdlvm vol create pool0/x
expect_fail 2 '12XB' vdlvm vol create pool0/x --size 12XB
expect_fail 2 'frobnicate' vdlvm vol frobnicate pool0/x
# Sizes near 2^64: too large, not a 0-byte volume nor a wrong reason.
expect_fail 2 "volume 'pool0/x': size 18446744073709551104 is too large \(at most" vdlvm vol create pool0/x --size 18446744073709551104
expect_fail 2 "volume 'pool0/x': size 18446744073709551104 is too large" vdlvm vol create pool0/x --size 18446744073709551104 --layout mirror --allow-same-node
expect_fail 2 "size 18446744073709551615 is too large" vdlvm vol create pool0/x --size 18446744073709551615
expect_fail 2 "--size '18446744073709551616' is too large \(at most" vdlvm vol create pool0/x --size 18446744073709551616
expect_fail 2 "--size '1\.3KiB' is not a whole number of bytes" vdlvm vol create pool0/x --size 1.3KiB
expect_fail 2 "size 18446744073709551104 is too large" vdlvm vol extend pool0/vol0 --size 18446744073709551104
expect_fail 2 "size 1000 is not a (positive )?multiple of 512" vdlvm vol create pool0/x --size 1000
expect_fail 1 "pool 'nosuchpool': no such pool.*known pools: pool0" vdlvm status nosuchpool
unchanged "bad usage"

# ---- too little free space: exit 1 -------------------------------------------
expect_fail 1 'big' vdlvm vol create pool0/big --size 1GiB
expect_fail 1 'vol0' vdlvm vol extend pool0/vol0 --size 1GiB
expect_fail 1 'nosuch' vdlvm vol extend pool0/nosuch --size 64MiB
expect_fail 1 'vol0' vdlvm vol create pool0/vol0 --size 4MiB
unchanged "a volume larger than the free space"

# ---- a device already in another pool: exit 1, nothing created ----------------
cat > "$tmp/bad/pool1.yaml" <<EOF
pool: pool1
devices:
  - name: e0
    path: $tmp/pool1-e0.img
    size: 64MiB
  - name: e1
    path: $tmp/pool0-d1.img
EOF
expect_fail 1 'pool0-d1\.img|e1' vdlvm pool create "$tmp/bad/pool1.yaml"
[ ! -e "$tmp/pool1-e0.img" ] || fail "a failed pool create left $tmp/pool1-e0.img behind"
unchanged "pool create on a device of another pool"

# ---- a missing device file ---------------------------------------------------------
cat > "$tmp/bad/missing.yaml" <<EOF
pool: pool2
devices:
  - name: f0
    path: $tmp/no-such-dir/f0.img
EOF
expect_fail nz 'f0\.img|f0' vdlvm pool create "$tmp/bad/missing.yaml"
unchanged "pool create on a missing device"

# ---- a path that is no file or block device: exit 2 with FILE:LINE -------------------
mkdir "$tmp/bad/adir"
printf 'pool: pool3\ndevices:\n  - name: g0\n    path: %s\n' "$tmp/bad/adir" > "$tmp/bad/dir.yaml"
expect_fail 2 'dir\.yaml:[0-9]+:[0-9]+: device .g0.*is a directory' vdlvm pool create "$tmp/bad/dir.yaml"
printf 'pool: pool3\ndevices:\n  - name: g0\n    path: /dev/null\n' > "$tmp/bad/null.yaml"
expect_fail 2 'null\.yaml:[0-9]+:[0-9]+: device .g0.*character device' vdlvm pool create "$tmp/bad/null.yaml"
unchanged "pool create on a directory or /dev/null"

# A device of the pool gone missing: reading the pool names it.  (Whether
# changes are allowed on a degraded pool is the library's policy; not
# checked here.)
mv "$tmp/pool0-d2.img" "$tmp/d2.moved"
out=$(vdlvm status pool0 2>&1) || true
grep -q "d2" <<<"$out" || fail "status with d2 missing does not name d2: $out"
grep -Eqi "no such file|missing|not found|open" <<<"$out" ||
    fail "status with d2 missing does not say what is wrong with it: $out"
mv "$tmp/d2.moved" "$tmp/pool0-d2.img"
unchanged "status with a device missing"

# ---- a second writer: the pool lock held by another process ---------------------
lock=$VDLVM_RUNDIR/pool0.lock
# One process (no child) holds the flock, so killing it releases the lock.
( exec 9>>"$lock" && flock 9 && exec sleep 120 ) </dev/null >/dev/null 2>&1 &
holder=$!
cleanup_fn kill_quiet "$holder"
wait_for 10 sh -c "! flock -n '$lock' true" || fail "could not take $lock"
expect_fail 4 'pool0.*(in use|lock|busy)' vdlvm vol create pool0/x --size 4MiB
expect_fail 4 'pool0.*(in use|lock|busy)' vdlvm pool create --force "$conf"
kill "$holder"; wait "$holder" 2>/dev/null || true
unchanged "a second writer (lock)"

# ---- a second writer: the pool held by tgtd ----------------------------------------
if ( requires_tgtd ) >/dev/null 2>&1 && [ -f "$BSDIR/bs_vdlvm.so" ]; then
    start_tgtd
    tgt_target_new 1 pool0 || fail "cannot create target"
    tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" || fail "cannot export pool0/vol0"
    url=$(iscsi_url 1 1)
    t1_ctl=$tgtd_ctl t1_pid=$tgtd_pid t1_log=$tgtd_log t1_port=$tgtd_port
    snapshot "$tmp/before"

    expect_fail 4 'pool0.*(in use|tgtd)' vdlvm pool create --force "$conf"
    expect_fail 1 'big' vdlvm vol create pool0/big --size 1GiB   # through the socket

    # A LUN on a volume that does not exist: tgtadm fails, tgtd stays up
    # and says why in its log.
    if tgt_lun_new 1 2 vdlvm pool0/nosuch "conf=$conf" 2>"$tmp/tgtadm.err"; then
        fail "tgtadm exported a volume that does not exist"
    fi
    kill -0 "$t1_pid" || fail "tgtd died on a LUN for a missing volume"
    wait_for 5 grep -q 'nosuch' "$t1_log" ||
        fail "tgtd's log does not name the missing volume: $(tail -n 5 "$t1_log")"

    # A second tgtd cannot take the pool.
    start_tgtd
    tgt_target_new 1 pool0b || fail "cannot create target on the second tgtd"
    if tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$conf" 2>"$tmp/tgtadm2.err"; then
        fail "a second tgtd opened pool0 while the first holds it"
    fi
    wait_for 5 grep -Eq 'pool0.*(in use|busy|lock)' "$tgtd_log" ||
        fail "second tgtd's log does not say pool0 is in use: $(tail -n 5 "$tgtd_log")"
    stop_tgtd

    # The first tgtd still serves vol0.
    tgtd_ctl=$t1_ctl tgtd_pid=$t1_pid tgtd_log=$t1_log tgtd_port=$t1_port
    kill -0 "$t1_pid" || fail "first tgtd died"
    timeout 30 iscsi-inq "$url" >/dev/null || fail "vol0 no longer answers INQUIRY"
    unchanged "second writers while tgtd holds the pool"
    stop_tgtd
else
    note "tgtd part skipped (needs root, tgtd and bs_vdlvm.so)"
fi
note "ok"
