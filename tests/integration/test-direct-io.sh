#!/bin/bash
# Issue 14: `direct:` on a device.  Two pools exported by one tgtd:
#   pf  one ext4 file ($tmp) with direct: true
#   pl  one loop block device (losetup on a file), direct: not given
#       (block devices are opened O_DIRECT by default)
# For each: tgtd holds the device open with O_DIRECT (/proc/PID/fdinfo),
# the asynchronous path (io_uring) is used, data written through iSCSI
# (qemu-img, then qemu-io writes of 512 bytes at 512-byte offsets and
# across an extent boundary) reads back identical after a SYNCHRONIZE
# CACHE, and again from a tgtd with io_uring off (VDLVM_URING=0: the
# worker threads' O_DIRECT path).  A pool on a loop device with
# direct: false is opened buffered and reads the same way.  Bad values of
# direct: are refused with file:line:column, and nothing is created.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_root
requires_tgtd
requires_vdlvm
requires losetup --version
requires qemu-img --version
requires qemu-io --version
requires sh -c 'qemu-img --help | grep -qw iscsi'
[ "$(df --output=fstype "$tmp" | tail -n 1)" = ext4 ] || skip "$tmp is not on ext4"

MiB=$((1024 * 1024))
vol_mib=40

loops=()
detach_loops() { local l; for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done; }
cleanup_fn detach_loops
loop_on() { # loop_on FILE MIB: prints the loop device
    truncate -s "$(($2 * MiB))" "$1"
    local l
    l=$(losetup -f --show "$1") || fail "losetup $1 failed"
    loops+=("$l")
    echo "$l"
}

# pool_conf NAME PATH EXTRA: one device at PATH (EXTRA: more lines of it)
pool_conf() {
    local conf=$tmp/$1.yaml
    printf 'pool: %s\nextent_size: 4MiB\ndevices:\n  - name: d0\n    path: %s\n%s' \
        "$1" "$2" "$3" > "$conf"
    echo "$conf"
}

# ---- bad input first: nothing is created --------------------------------
bad=$(pool_conf pbad "$tmp/pbad-d0.img" $'    size: 64MiB\n    direct: maybe\n')
expect_fail 2 'pbad\.yaml:7:13: device .d0.: direct .maybe. is not a boolean; use true or false' \
    vdlvm pool create "$bad"
[ ! -e "$tmp/pbad-d0.img" ] || fail "a refused definition created its device file"
bad=$(pool_conf pbad2 "$tmp/pbad2-d0.img" $'    size: 64MiB\n    direct: yes\n')
expect_fail 2 'pbad2\.yaml:7:13: .*not a boolean' vdlvm pool create "$bad"
printf 'pool: pbad3\ndevices:\n  - name: r\n    iscsi: iscsi://127.0.0.1/iqn.2026-01.x:t/1\n    direct: true\n' > "$tmp/pbad3.yaml"
expect_fail 2 'pbad3\.yaml:5:5: device .r.: direct is only valid for a local device' \
    vdlvm pool create "$tmp/pbad3.yaml"

# ---- the pools ---------------------------------------------------------
conf_f=$(pool_conf pf "$tmp/pf-d0.img" $'    size: 64MiB\n    direct: true\n')
loopdev=$(loop_on "$tmp/pl-backing.img" 64)
conf_l=$(pool_conf pl "$loopdev" '')
loopbuf=$(loop_on "$tmp/pb-backing.img" 64)
conf_b=$(pool_conf pb "$loopbuf" $'    direct: false\n')
for p in pf pl pb; do
    c=$tmp/$p.yaml
    vdlvm pool create "$c" >/dev/null || fail "pool create $p failed"
    vdlvm -c "$c" vol create "$p/vol" --size ${vol_mib}MiB >/dev/null || fail "vol create $p/vol failed"
done

tgtd_log_all() { cat "$tmp"/tgtd-*.log 2>/dev/null || true; }
declare -A url=() dev=([pf]="$tmp/pf-d0.img" [pl]="$loopdev" [pb]="$loopbuf")
export_all() {
    local tid=1 p
    for p in pf pl pb; do
        tgt_target_new $tid "$p" || fail "cannot create target $p"
        tgt_lun_new $tid 1 vdlvm "$p/vol" "conf=$tmp/$p.yaml" || fail "cannot export $p/vol"
        url[$p]=$(iscsi_url $tid 1)
        tid=$((tid + 1))
    done
}
# o_direct PATH: 1 when tgtd has PATH open with O_DIRECT, 0 when buffered
o_direct() {
    local fd l flags found=''
    for fd in /proc/"$tgtd_pid"/fd/*; do
        l=$(readlink "$fd" 2>/dev/null) || continue
        [ "$l" = "$1" ] || continue
        flags=$(awk '/^flags:/ { print $2 }' /proc/"$tgtd_pid"/fdinfo/"${fd##*/}")
        found=$(( (8#$flags & 8#40000) ? 1 : 0 ))
    done
    [ -n "$found" ] || fail "tgtd does not hold $1 open"
    echo "$found"
}

start_tgtd
export_all
for p in pf pl pb; do
    random_file "$tmp/in-$p" "$vol_mib"
    iscsi_write "$tmp/in-$p" "${url[$p]}" || fail "qemu-img write to $p failed"
    # 512-byte writes at odd sectors, one across the first extent boundary
    for spec in "0x11 $((MiB + 512)) 512" "0x22 $((4 * MiB - 1024)) 3k" "0x33 $((7 * MiB + 1536)) 1536"; do
        read -r pat off len <<<"$spec"
        timeout 60 qemu-io -f raw -c "write -P $pat $off $len" "${url[$p]}" >/dev/null ||
            fail "qemu-io write $spec to $p failed"
        bytes=$(numfmt --from=iec "${len^^}")
        head -c "$bytes" /dev/zero | tr '\0' "\\$(printf '%03o' "$pat")" |
            dd of="$tmp/in-$p" bs=512 seek=$((off / 512)) conv=notrunc status=none
    done
    timeout 60 qemu-io -f raw -c flush "${url[$p]}" >/dev/null || fail "SYNCHRONIZE CACHE on $p failed"
    iscsi_read "${url[$p]}" "$tmp/out" $((vol_mib * MiB)) || fail "qemu-img read from $p failed"
    cmp "$tmp/in-$p" "$tmp/out" || fail "$p: data read back differs from data written"
done
[ "$(o_direct "${dev[pf]}")" = 1 ] || fail "the direct: true file is not open O_DIRECT in tgtd"
[ "$(o_direct "${dev[pl]}")" = 1 ] || fail "the loop device is not open O_DIRECT by default"
[ "$(o_direct "${dev[pb]}")" = 0 ] || fail "the direct: false loop device is open O_DIRECT"
grep -q "asynchronous I/O: commands start on the main thread" <(tgtd_log_all) ||
    fail "tgtd did not use the asynchronous path on direct devices: $(tgtd_log_all | tail -n 20)"
note "direct file, loop (default direct) and loop (direct: false): ${vol_mib} MiB and short writes read back identical"

# the same data through the worker threads (io_uring off)
stop_tgtd
rm -f "$tmp"/tgtd-*.log
VDLVM_URING=0 start_tgtd
export_all
for p in pf pl pb; do
    iscsi_read "${url[$p]}" "$tmp/out" $((vol_mib * MiB)) || fail "qemu-img read from $p (no io_uring) failed"
    cmp "$tmp/in-$p" "$tmp/out" || fail "$p: data differs when read without io_uring"
done
# a write through the thread path, read back
timeout 60 qemu-io -f raw -c "write -P 0x44 $((2 * MiB + 512)) 512" "${url[pf]}" >/dev/null ||
    fail "qemu-io write (no io_uring) failed"
timeout 60 qemu-io -f raw -c "read -P 0x44 $((2 * MiB + 512)) 512" -c "read -P 0x11 $((MiB + 512)) 512" \
    "${url[pf]}" > "$tmp/rb" || fail "read back (no io_uring) failed"
[ "$(grep -c "read 512/512" "$tmp/rb")" = 2 ] && ! grep -qi "verification failed" "$tmp/rb" || fail "read back (no io_uring): $(cat "$tmp/rb")"
[ "$(o_direct "${dev[pf]}")" = 1 ] || fail "no io_uring: the direct file is not open O_DIRECT"
grep -q "io_uring is off (VDLVM_URING=0)" <(tgtd_log_all) || fail "tgtd did not say io_uring is off"
note "VDLVM_URING=0: the worker threads read and write the direct devices; ok"
