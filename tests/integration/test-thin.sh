#!/bin/bash
# Thin volumes through iSCSI (issue 10): a 10 GiB thin volume on a pool of
# 200 MiB (two 100 MiB sparse files), exported by tgtd with bs_vdlvm.so.
#   1. the LUN advertises logical block provisioning: READ CAPACITY(16)
#      LBPME=1 LBPRZ=1 LBPPBE=0; VPD B2 LBPU, LBPWS, LBPWS10, LBPRZ, type
#      thin; VPD B0 OPTIMAL UNMAP GRANULARITY = the chunk, finite MAXIMUM
#      UNMAP LBA COUNT and descriptor count; a thick LUN of the same pool
#      advertises none of it;
#   2. scattered 4 KiB writes read back, never-written blocks read zeroes,
#      `qemu-img map --output=json` shows data only in the written chunks;
#   3. `qemu-io -c discard` of written chunks gives their space back (pool
#      allocated before/after, exactly); UNMAP and WRITE SAME(UNMAP) of a
#      range with partial chunks free the whole chunks, zero the partial
#      ones and allocate nothing again; WRITE SAME of a zero block frees too;
#   4. writes until the pool is full: the first one that needs a chunk gets
#      DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h); earlier
#      data reads back, overwrites of allocated chunks work, a thick volume
#      of the pool keeps working, status shows the thresholds crossed;
#   5. after `vdlvm vol remove` of the thick volume (live, through tgtd), the
#      next writes succeed without a restart;
#   6. a thin mirror (2 copies on devices of 2 nodes) reads back, shows holes
#      and its legs verify equal.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/thin-common.sh"
thin_requires
thin_tool_build

CHUNK=$((64 * 1024))
conf=$(thin_pool_conf pool0 2 100MiB)
vdlvm pool create "$conf" || fail "pool create failed"
vdlvm vol create pool0/other --size 32MiB || fail "vol create other failed"
out=$(vdlvm vol create pool0/thin --size 10GiB --thin 2>&1) || thin_create_failed "$out"
note "$out"
grep -q "10GiB thin (chunks of 64KiB" <<<"$out" || fail "vol create --thin says: $out"
vdlvm vol list pool0 > "$tmp/list.txt" || fail "vol list failed"
cat "$tmp/list.txt" >&2
grep -Eq "^pool0/thin +10GiB +linear +1 +no +thin +0B \(0\.0%\) +64KiB$" "$tmp/list.txt" ||
    fail "vol list does not show an empty thin volume: $(cat "$tmp/list.txt")"
[ "$(vol_field pool0/thin allocated)" = 0 ] || fail "a new thin volume has space allocated"

start_tgtd
tgt_target_new 1 thin || fail "cannot create target"
tgt_lun_new 1 1 vdlvm pool0/thin "conf=$conf" || fail "cannot export pool0/thin"
tgt_lun_new 1 2 vdlvm pool0/other "conf=$conf" || fail "cannot export pool0/other"
url=$(iscsi_url 1 1)
url_other=$(iscsi_url 1 2)
[ "$(iscsi_size "$url")" = $((10 * GiB)) ] || fail "the thin LUN is not 10 GiB"
grep -q "pool0/thin' exported as LUN 1:1 (10737418240 bytes, thin, chunk 65536 bytes)" "$tgtd_log" ||
    fail "tgtd's log does not say the LUN is thin"

# ---- 1. what the LUN advertises ---------------------------------------------------
"$THIN_TOOL" lbp "$url" > "$tmp/lbp.txt" || fail "thin-tool lbp failed"
for kv in lbpme=1 lbprz=1 lbppbe=0 lbpu=1 lbpws=1 lbpws10=1 lbprz_b2=1 ptype=2 \
          opt_unmap_gran=$((CHUNK / 512)) max_unmap=1048576 \
          max_unmap_bdc=256 ugavalid=1 unmap_gran_align=0; do
    grep -qx "$kv" "$tmp/lbp.txt" || fail "thin LUN: want $kv: $(tr '\n' ' ' < "$tmp/lbp.txt")"
done
"$THIN_TOOL" lbp "$url_other" > "$tmp/lbp-thick.txt" || fail "thin-tool lbp (thick) failed"
for kv in lbpme=0 lbprz=0 lbpu=0 ptype=0 max_unmap=0 max_unmap_bdc=0 opt_unmap_gran=0; do
    grep -qx "$kv" "$tmp/lbp-thick.txt" || fail "thick LUN: want $kv: $(tr '\n' ' ' < "$tmp/lbp-thick.txt")"
done
note "thin LUN advertises: $(tr '\n' ' ' < "$tmp/lbp.txt")"

# ---- 2. scattered writes, holes ----------------------------------------------------
offs=()
for k in 0 1 2 3 4 5 6 7 8 9; do
    offs+=($(( k * 1000 * MiB + k * 68 * 1024 )))
done
alloc0=$(pool_field pool0 allocated)
for k in "${!offs[@]}"; do
    qemu_io "$url" "write -P $((0x10 + k)) ${offs[k]} 4k" ||
        fail "write at ${offs[k]} failed: $(cat "$tmp/qio.out")"
done
for k in "${!offs[@]}"; do
    qemu_io "$url" "read -P $((0x10 + k)) ${offs[k]} 4k" ||
        fail "data at ${offs[k]} does not read back: $(cat "$tmp/qio.out")"
done
qemu_io "$url" "read -P 0 $((5 * GiB)) 1M" || fail "a never-written MiB does not read as zeroes"
alloc1=$(pool_field pool0 allocated)
[ $((alloc1 - alloc0)) = $((10 * CHUNK)) ] ||
    fail "10 scattered 4 KiB writes allocated $((alloc1 - alloc0)) bytes, not 10 chunks"
[ "$(vol_field pool0/thin allocated)" = $((10 * CHUNK)) ] || fail "volume allocated is not 10 chunks"

# data_ranges: "START LENGTH" of every range qemu-img map reports as data.
data_ranges() {
    timeout 300 qemu-img map -f raw --output=json "$url" > "$tmp/map.json" ||
        fail "qemu-img map failed"
    { tr -d ' \n' < "$tmp/map.json"; echo; } | sed 's/},{/}\n{/g' |
        sed -n 's/.*"start":\([0-9]*\),"length":\([0-9]*\),.*"data":true.*/\1 \2/p'
}
check_map() { # expected number of data chunks, then the offsets that must be data
    local want=$1 total=0 s l o ok
    shift
    data_ranges > "$tmp/ranges.txt"
    while read -r s l; do total=$((total + l)); done < "$tmp/ranges.txt"
    [ "$total" -le $((want * CHUNK)) ] ||
        fail "qemu-img map shows $total bytes of data, more than $want chunks: $(cat "$tmp/ranges.txt")"
    for o in "$@"; do
        ok=0
        while read -r s l; do
            [ "$o" -ge "$s" ] && [ $((o + 4096)) -le $((s + l)) ] && ok=1
        done < "$tmp/ranges.txt"
        [ "$ok" = 1 ] || fail "qemu-img map: written offset $o is not data: $(cat "$tmp/ranges.txt")"
    done
}
check_map 10 "${offs[@]}"
note "qemu-img map: data only in the 10 written chunks: $(tr '\n' ';' < "$tmp/ranges.txt")"

# ---- 3. discard gives space back ----------------------------------------------------
before=$(pool_field pool0 allocated)
for k in 0 1 2 3 4; do
    c=$(( offs[k] / CHUNK * CHUNK ))
    qemu_io "$url" "discard $c 64k" || fail "discard at $c failed: $(cat "$tmp/qio.out")"
done
after=$(pool_field pool0 allocated)
note "pool allocated before discard $before, after $after"
[ $((before - after)) = $((5 * CHUNK)) ] ||
    fail "discarding 5 chunks gave back $((before - after)) bytes, not $((5 * CHUNK))"
for k in 0 1 2 3 4; do
    qemu_io "$url" "read -P 0 ${offs[k]} 4k" || fail "discarded data at ${offs[k]} is not zeroes"
done
for k in 5 6 7 8 9; do
    qemu_io "$url" "read -P $((0x10 + k)) ${offs[k]} 4k" || fail "data at ${offs[k]} lost by discards"
done
check_map 5 "${offs[@]:5}"

# UNMAP and WRITE SAME(UNMAP) of ranges that end in partial chunks: whole
# chunks are freed, partial ones zeroed, nothing allocated again.
D=$((7 * GiB))
qemu_io "$url" "write -P 0x44 $D 192k" || fail "write at $D failed"
a=$(pool_field pool0 allocated)
"$THIN_TOOL" writesame "$url" $((D + 4096)) $((192 * 1024 - 4096)) 0x99 1 > "$tmp/ws.txt" ||
    fail "WRITE SAME(UNMAP) failed: $(cat "$tmp/ws.txt")"
b=$(pool_field pool0 allocated)
[ $((a - b)) = $((2 * CHUNK)) ] ||
    fail "WRITE SAME(UNMAP) of 2 whole chunks and a partial one freed $((a - b)) bytes, not 2 chunks (re-zeroed?)"
qemu_io "$url" "read -P 0x44 $D 4k" || fail "WRITE SAME(UNMAP) touched data before its range"
qemu_io "$url" "read -P 0 $((D + 4096)) $((192 * 1024 - 4096))" || fail "WRITE SAME(UNMAP) range is not zeroes"
"$THIN_TOOL" unmap "$url" $D 4096 > "$tmp/um.txt" || fail "UNMAP failed: $(cat "$tmp/um.txt")"
c=$(pool_field pool0 allocated)
[ "$c" = "$b" ] || fail "UNMAP of a partial chunk changed allocated ($b -> $c)"
qemu_io "$url" "read -P 0 $D 64k" || fail "UNMAP of a partial chunk did not zero it"
E=$((8 * GiB))
qemu_io "$url" "write -P 0x45 $E 128k" || fail "write at $E failed"
a=$(pool_field pool0 allocated)
"$THIN_TOOL" writesame "$url" $E $((128 * 1024)) 0 0 > "$tmp/ws0.txt" ||
    fail "WRITE SAME of zeroes failed: $(cat "$tmp/ws0.txt")"
b=$(pool_field pool0 allocated)
[ $((a - b)) = $((2 * CHUNK)) ] || fail "WRITE SAME of a zero block over 2 chunks freed $((a - b)) bytes"
qemu_io "$url" "read -P 0 $E 128k" || fail "WRITE SAME of zeroes does not read as zeroes"
note "UNMAP, WRITE SAME(UNMAP) and zero WRITE SAME free whole chunks and zero partial ones"

# ---- 4. writes until the pool is full --------------------------------------------
"$THIN_TOOL" fill "$url" $((2 * GiB)) $MiB 0x55 > "$tmp/fill.txt" || true
note "fill: $(tr '\n' ' ' < "$tmp/fill.txt")"
grep -q "status=check key=7 asc=0x27 ascq=0x07" "$tmp/fill.txt" ||
    fail "the write that found the pool full did not get DATA PROTECT 27h/07h: $(cat "$tmp/fill.txt")"
filled=$(sed -n 's/^written=//p' "$tmp/fill.txt")
full_at=$(sed -n 's/^failed_at=//p' "$tmp/fill.txt")
[ "$filled" -ge $((100 * MiB)) ] || fail "only $filled bytes written before the pool was full"
# A 1 MiB write needs 16 chunks: fewer may be left.  Take them one by one.
"$THIN_TOOL" fill "$url" "$full_at" $CHUNK 0x55 > "$tmp/fill1.txt" || true
note "fill by chunks: $(tr '\n' ' ' < "$tmp/fill1.txt")"
grep -q "status=check key=7 asc=0x27 ascq=0x07" "$tmp/fill1.txt" ||
    fail "filling chunk by chunk did not end with DATA PROTECT 27h/07h: $(cat "$tmp/fill1.txt")"
last=$(sed -n 's/^written=//p' "$tmp/fill1.txt")
[ "$last" -lt $MiB ] || fail "$last bytes fitted by chunks after a 1 MiB write found the pool full"
full_at=$(sed -n 's/^failed_at=//p' "$tmp/fill1.txt")
full_at=$(( (full_at + MiB - 1) / MiB * MiB ))
for k in 5 6 7 8 9; do
    qemu_io "$url" "read -P $((0x10 + k)) ${offs[k]} 4k" || fail "data at ${offs[k]} unreadable while full"
done
qemu_io "$url" "read -P 0x55 $((2 * GiB)) 1M" || fail "filled data unreadable while full"
out=$("$THIN_TOOL" write "$url" $((2 * GiB)) $CHUNK 0x66) || fail "overwrite of an allocated chunk failed while full: $out"
qemu_io "$url" "read -P 0x66 $((2 * GiB)) 64k" || fail "overwrite while full does not read back"
rc=0; out=$("$THIN_TOOL" write "$url" $((9 * GiB + 512 * MiB)) 4096 0x77) || rc=$?
[ "$rc" = 1 ] && grep -q "key=7 asc=0x27 ascq=0x07" <<<"$out" ||
    fail "a write to a new chunk while full: $out"
qemu_io "$url_other" "write -P 0x31 0 1M" || fail "the thick volume of the full pool failed a write"
qemu_io "$url_other" "read -P 0x31 0 1M" || fail "the thick volume of the full pool does not read back"
vdlvm status pool0 > "$tmp/status-full.txt" || fail "status failed"
cat "$tmp/status-full.txt" >&2
grep -q "allocation threshold 95% crossed" "$tmp/status-full.txt" || fail "status does not show the 95% threshold"
vdlvm status pool0 --json | grep -q '"thresholds_crossed":\[80,90,95\]' || fail "status --json does not list the thresholds"
grep -Eq "threshold|95" "$tgtd_log" || note "tgtd's log names no threshold (the pool logs it)"

# ---- 5. space comes back: remove the thick volume -----------------------------------
tgt_lun_delete 1 2 || fail "cannot delete LUN 2"
ok=0
for i in $(seq 1 50); do
    if vdlvm vol remove pool0/other > "$tmp/rm.out" 2>&1; then ok=1; break; fi
    sleep 0.2
done
[ "$ok" = 1 ] || fail "vol remove pool0/other failed: $(cat "$tmp/rm.out")"
out=$("$THIN_TOOL" write "$url" $((9 * GiB + 512 * MiB)) 4096 0x77) ||
    fail "a write after space was freed still fails (no restart done): $out"
qemu_io "$url" "read -P 0x77 $((9 * GiB + 512 * MiB)) 4k" || fail "that write does not read back"
"$THIN_TOOL" fill "$url" "$full_at" $MiB 0x56 > "$tmp/fill2.txt" || true
more=$(sed -n 's/^written=//p' "$tmp/fill2.txt")
note "after removing the 32 MiB volume: $more more bytes written; $(grep status= "$tmp/fill2.txt")"
[ "$more" -ge $((24 * MiB)) ] || fail "only $more bytes could be written after 32 MiB were freed"
grep -q "key=7 asc=0x27 ascq=0x07" "$tmp/fill2.txt" || fail "second fill did not end with 27h/07h"
qemu_io "$url" "read -P 0x56 $full_at 1M" || fail "data written after the removal does not read back"

# ---- 6. a thin mirror on two nodes ------------------------------------------------------
mconf=$(thin_pool_conf mp 2 64MiB 128KiB "nodea nodeb")
vdlvm pool create "$mconf" || fail "pool create mp failed"
out=$(vdlvm vol create mp/tm --size 1GiB --thin --layout mirror --copies 2) ||
    fail "thin mirror create failed: $out"
grep -q "1GiB thin (chunks of 128KiB allocated on first write), mirror, 2 copies" <<<"$out" ||
    fail "thin mirror create says: $out"
tgt_target_new 2 tm || fail "cannot create target 2"
tgt_lun_new 2 1 vdlvm mp/tm "conf=$mconf" || fail "cannot export mp/tm"
url=$(iscsi_url 2 1)
CHUNK=$((128 * 1024))
moffs=(0 $((300 * MiB + 4096)) $((700 * MiB)) $((GiB - 4096)))
for k in "${!moffs[@]}"; do
    qemu_io "$url" "write -P $((0x60 + k)) ${moffs[k]} 4k" || fail "mirror write at ${moffs[k]} failed"
done
for k in "${!moffs[@]}"; do
    qemu_io "$url" "read -P $((0x60 + k)) ${moffs[k]} 4k" || fail "mirror data at ${moffs[k]} does not read back"
done
check_map 4 "${moffs[@]}"
[ "$(vol_field mp/tm allocated)" = $((4 * CHUNK)) ] || fail "thin mirror: allocated is not 4 chunks"
qemu_io "$url" "discard 0 128k" || fail "mirror discard failed"
[ "$(vol_field mp/tm allocated)" = $((3 * CHUNK)) ] || fail "thin mirror: discard did not free its chunk"
qemu_io "$url" "read -P 0 0 128k" || fail "thin mirror: discarded chunk is not zeroes"
# The legs compared by `vdlvm verify` (over the allocated data space).
rc=0; vout=$(vdlvm verify mp/tm 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "thin mirror: vdlvm verify: exit $rc: $vout"
note "thin mirror: $vout"
note "OK"
