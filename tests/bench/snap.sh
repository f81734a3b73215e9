#!/bin/bash
# Usage: tests/bench/snap.sh BUILD [--quick] [--out DIR] [--dir BACKING_DIR]
#
# Snapshot benchmark (issue 11's targets), ratios in one run, medians of
# RUNS (3) repetitions, one tgtd (the installed binary with BUILD's
# bs_vdlvm.so), client build/vdload (libiscsi, queue depth 32), backing
# files on tmpfs (/dev/shm; BENCH_DIR or --dir to change).  One pool of
# one device file serves every vdlvm row; tgt's rdwr on a file of the same
# size is the reference row for write IOPS.
#
#   create     `vdlvm snap create` of a 1 GiB and of a 1 TiB thin volume
#              holding the same DATA_MIB written (sequential 1 MiB writes):
#              the time the library took (the command's "created in X ms",
#              through the tgtd's control socket) and the command's wall
#              time.  Goals: 1 TiB / 1 GiB within 2x, both under 50 ms.
#   cow        4 KiB writes, one per 64 KiB chunk of a prefilled LUN_MIB
#              thin volume in a seeded shuffled order (vdload --pattern
#              shuffle --stride 64k), right after a snapshot: every write
#              copies a shared chunk (copy-on-write); then the same writes
#              again: the chunks are the volume's alone now (overwrite).
#              Each repetition takes a new snapshot and removes it after.
#              Goal: cow / overwrite >= 0.5.
#   many       NSNAP (1,000) snapshots of one prefilled thin volume, taken
#              while a 4 KiB random write load runs on it (so they differ),
#              then: three of them (first, middle, last) exported as LUNs
#              and read in full (no error); 4 KiB random read of the last
#              one vs the volume; 4 KiB random write IOPS of the volume
#              with NSNAP snapshots (after one pass that copied every
#              chunk) vs with none (before the first snapshot); then every
#              snapshot removed, in a shuffled order, and `pool check`
#              clean.  Goal: write with NSNAP / with none >= 0.9.
#   clones     a DATA_MIB image (thin volume, written in full), snapshot
#              gi@base; 20 clones of it (`vdlvm vol clone`, the library's
#              time per clone) and the pool space they take (goal: 20
#              clones < 1.1x the image); the first 4 KiB write to each
#              chunk of a clone (every write a copy, shuffled order) vs the
#              first writes to a new thin volume (every write an
#              allocation); a clone of a clone ... 32 deep: 4 KiB random
#              read vs the image (goal >= 0.9).
#
# Writes DIR/snap-DATE.md and DIR/snap-DATE.tsv (raw runs), copied to
# DIR/snap-latest.{md,tsv}; DIR defaults to bench/results (full run) or
# BUILD/bench-quick (--quick: 1 repetition of 1 s, 64 MiB, 50 snapshots;
# checks that every row produced numbers).  Exit status non-zero if a run
# failed.  Goals are reported, not enforced (this machine's noise).
set -uo pipefail

usage() { echo "usage: $0 BUILD [--quick] [--out DIR] [--dir BACKING_DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no build directory $1" >&2; exit 2; }
export BUILD
shift
quick=0 out=
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        --dir) [ $# -ge 2 ] || usage; BENCH_DIR=$2; shift 2 ;;
        *) usage ;;
    esac
done
top=$(cd "$(dirname "$0")/../.." && pwd)

source "$top/tests/functions.sh"
test_name=bench-snap
requires_tgtd
requires_vdlvm
requires_file "$BUILD/vdload"

if [ "$quick" = 1 ]; then
    RUNS=${BENCH_RUNS:-1} SECS=${BENCH_SECS:-1} LUN_MIB=${BENCH_LUN_MIB:-64}
    NSNAP=${BENCH_NSNAP:-50} DATA_MIB=${BENCH_DATA_MIB:-16}
    out=${out:-$BUILD/bench-quick}
else
    RUNS=${BENCH_RUNS:-3} SECS=${BENCH_SECS:-3} LUN_MIB=${BENCH_LUN_MIB:-512}
    NSNAP=${BENCH_NSNAP:-1000} DATA_MIB=${BENCH_DATA_MIB:-256}
    out=${out:-$top/bench/results}
fi
QD=32
SEED=42
MiB=$((1024 * 1024))
lun=$(( LUN_MIB * MiB ))
VDLOAD=$BUILD/vdload
bench_parent=${BENCH_DIR:-/dev/shm}
mkdir -p "$out" || fail "cannot create $out"
stamp=$(date +%Y%m%d-%H%M%S)
t_begin=$(date +%s)
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
tgt_version=$(dpkg-query -W -f '${Version}' tgt 2>/dev/null || echo unknown)

bdir=$(mktemp -d "$bench_parent/vdlvm-bench-snap.XXXXXX") || fail "cannot create a directory in $bench_parent"
rm_bdir() { rm -rf "$bdir"; }
cleanup_fn rm_bdir
bfs=$(df --output=fstype "$bdir" | tail -n 1)

# one pool: the COW row's volume twice over, the many row's volume with
# room for one copy of each chunk and 1 MiB per snapshot, the create
# row's data twice, metadata
dev_mib=$(( 4 * LUN_MIB + 8 * DATA_MIB + NSNAP + 256 ))
conf=$tmp/bsnap.yaml
cat > "$conf" <<EOF
pool: bsnap
extent_size: 4M
devices:
  - name: d0
    path: $bdir/bsnap-d0.img
    size: ${dev_mib}M
EOF
vdlvm pool create "$conf" > "$tmp/create.log" 2>&1 || fail "pool create: $(cat "$tmp/create.log")"
truncate -s "$lun" "$bdir/rdwr.img"

start_tgtd
tid=0
# lun_of BACKING BSTYPE [BSOPTS]: a new target with one LUN; its URL in $url
lun_of() {
    tid=$(( tid + 1 ))
    tgt_target_new "$tid" "snap-$tid" >&2 || fail "cannot create target $tid"
    tgt_lun_new "$tid" 1 "$2" "$1" "${3:-}" >&2 || fail "cannot export $1"
    url=$(iscsi_url "$tid" 1)
}
num='([0-9.]+)'
total_re="\"seconds\":$num,.*\"total\":\\{\"ios\":$num,\"bytes\":$num,\"iops\":$num,\"mbps\":$num,\"lat_us\":\\{\"mean\":$num,\"p50\":$num,\"p99\":$num,.*\"errors\":([0-9]+)"
raw=$tmp/raw.tsv
printf 'row\tcase\trun\tvalue\tunit\n' > "$raw"
failures=0 failed=
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$raw"; }
bad() { note "FAILED: $*"; failures=$(( failures + 1 )); failed+="; $*"; }
# load URL ARGS...: one vdload run; sets $iops (and fails the row on errors)
load() {
    local u=$1 res; shift
    iops=
    if ! res=$(timeout 600 "$VDLOAD" "$@" --qd $QD --seed $SEED --json "$u" 2>"$tmp/err"); then
        bad "vdload $* on $u: $(head -c 300 "$tmp/err")"; return 1
    fi
    [[ $res =~ $total_re ]] || { bad "vdload $*: cannot parse its output"; return 1; }
    [ "${BASH_REMATCH[9]}" = 0 ] || { bad "vdload $*: ${BASH_REMATCH[9]} errors"; return 1; }
    iops=${BASH_REMATCH[4]}
}
prefill() { load "$1" write --pattern seq --bs 1M --count "$2" --range "0:$(( $2 * MiB ))" > /dev/null; }
ms_now() { date +%s%3N; }

# ---- create: 1 GiB vs 1 TiB ---------------------------------------------------
for v in g1:1GiB t1:1TiB; do
    vdlvm vol create "bsnap/${v%%:*}" --size "${v#*:}" --thin > /dev/null ||
        fail "cannot create the thin volume ${v#*:}"
done
lun_of bsnap/g1 vdlvm "conf=$conf"; url_g1=$url
lun_of bsnap/t1 vdlvm "conf=$conf"; url_t1=$url
prefill "$url_g1" "$DATA_MIB"
prefill "$url_t1" "$DATA_MIB"
for (( r = 1; r <= RUNS; r++ )); do
    for v in g1 t1; do
        t0=$(ms_now)
        if o=$(vdlvm snap create "bsnap/$v@c$r" 2>&1); then
            t1=$(ms_now)
            lib=$(grep -o 'in [0-9.]* ms' <<<"$o" | cut -d' ' -f2)
            row create "$v-lib" "$r" "$lib" ms
            row create "$v-wall" "$r" "$(( t1 - t0 ))" ms
        else
            bad "snap create bsnap/$v@c$r: $o"
        fi
    done
done
note "create row done after $(( $(date +%s) - t_begin )) s"

# ---- cow vs overwrite ---------------------------------------------------------------
vdlvm vol create bsnap/cw --size "${LUN_MIB}MiB" --thin > /dev/null || fail "cannot create bsnap/cw"
lun_of bsnap/cw vdlvm "conf=$conf"; url_cw=$url
lun_of "$bdir/rdwr.img" rdwr; url_rdwr=$url
prefill "$url_cw" "$LUN_MIB"
prefill "$url_rdwr" "$LUN_MIB"
nchunk=$(( lun / 65536 ))
shuf_args=(write --pattern shuffle --stride 64k --bs 4k --count "$nchunk" --range "0:$lun")
for (( r = 1; r <= RUNS; r++ )); do
    vdlvm snap create "bsnap/cw@w$r" > /dev/null || bad "snap create bsnap/cw@w$r"
    load "$url_cw" "${shuf_args[@]}" && row cow cow "$r" "$iops" iops
    load "$url_cw" "${shuf_args[@]}" && row cow overwrite "$r" "$iops" iops
    load "$url_rdwr" "${shuf_args[@]}" && row cow rdwr "$r" "$iops" iops
    vdlvm snap remove "bsnap/cw@w$r" > /dev/null || bad "snap remove bsnap/cw@w$r"
done
note "cow row done after $(( $(date +%s) - t_begin )) s"

# ---- many snapshots ------------------------------------------------------------------
vdlvm vol create bsnap/m --size "${LUN_MIB}MiB" --thin > /dev/null || fail "cannot create bsnap/m"
lun_of bsnap/m vdlvm "conf=$conf"; url_m=$url
prefill "$url_m" "$LUN_MIB"
rw_args=(write --pattern rand --bs 4k --time "$SECS" --range "0:$lun")
for (( r = 1; r <= RUNS; r++ )); do
    load "$url_m" "${rw_args[@]}" && row many write-0 "$r" "$iops" iops
    load "$url_rdwr" "${rw_args[@]}" && row many rdwr-write "$r" "$iops" iops
done
# snapshots under a light write load on the first MiB, so that they
# differ (each holds at most 16 chunks of its own: 1 MiB)
( timeout 3600 "$VDLOAD" write --pattern rand --bs 4k --qd 1 --time 3600 --range "0:$MiB" \
    --seed 7 --quiet "$url_m" > /dev/null 2>&1 ) &
bg=$!
cleanup_fn kill_quiet "$bg"
t0=$(ms_now)
for (( i = 1; i <= NSNAP; i++ )); do
    vdlvm snap create "bsnap/m@s$i" > /dev/null 2>"$tmp/err" || { bad "snap create bsnap/m@s$i: $(cat "$tmp/err")"; break; }
done
t1=$(ms_now)
kill "$bg" 2>/dev/null; wait "$bg" 2>/dev/null
row many create-all 1 "$(( t1 - t0 ))" ms
n=$(vdlvm snap list bsnap/m --json | grep -o '"name"' | wc -l)
[ "$n" = "$NSNAP" ] || bad "snap list shows $n snapshots, want $NSNAP"
note "$NSNAP snapshots in $(( t1 - t0 )) ms"
for s in 1 $(( NSNAP / 2 )) "$NSNAP"; do
    lun_of "bsnap/m@s$s" vdlvm "conf=$conf"; u=$url
    load "$u" read --pattern seq --bs 1M --count "$LUN_MIB" --range "0:$lun" && row many "read-all-s$s" 1 "$iops" iops
    last_url=$u
done
for (( r = 1; r <= RUNS; r++ )); do
    load "$last_url" read --pattern rand --bs 4k --time "$SECS" --range "0:$lun" && row many read-snap "$r" "$iops" iops
    load "$url_m" read --pattern rand --bs 4k --time "$SECS" --range "0:$lun" && row many read-vol "$r" "$iops" iops
done
# one pass that copies every chunk still shared, then steady-state writes
load "$url_m" "${shuf_args[@]}" && row many cow-pass 1 "$iops" iops
for (( r = 1; r <= RUNS; r++ )); do
    load "$url_m" "${rw_args[@]}" && row many write-n "$r" "$iops" iops
done
# delete: the exported ones refuse until their LUNs go
for (( t = tid - 2; t <= tid; t++ )); do tgt_lun_delete "$t" 1 || bad "cannot delete LUN of target $t"; done
t0=$(ms_now)
for i in $(seq 1 "$NSNAP" | shuf --random-source=<(yes)); do
    vdlvm snap remove "bsnap/m@s$i" > /dev/null 2>"$tmp/err" || bad "snap remove bsnap/m@s$i: $(cat "$tmp/err")"
done
t1=$(ms_now)
row many remove-all 1 "$(( t1 - t0 ))" ms
n=$(vdlvm snap list bsnap/m --json | grep -o '"name"' | wc -l)
[ "$n" = 0 ] || bad "$n snapshots left after removing all"
vdlvm pool check bsnap > "$tmp/check" 2>&1 || bad "pool check: $(cat "$tmp/check")"
note "many row done after $(( $(date +%s) - t_begin )) s"

# ---- clones ----------------------------------------------------------------------------
img=$(( DATA_MIB * MiB ))
vdlvm vol create bsnap/gi --size "${DATA_MIB}MiB" --thin > /dev/null || fail "cannot create bsnap/gi"
lun_of bsnap/gi vdlvm "conf=$conf"; url_gi=$url
prefill "$url_gi" "$DATA_MIB"
vdlvm snap create bsnap/gi@base > /dev/null || bad "snap create bsnap/gi@base"
a0=$(vdlvm vol list bsnap --json | grep -o '"name":"gi"[^}]*"allocated":[0-9]*' | grep -o '[0-9]*$')
for (( i = 1; i <= 20; i++ )); do
    if o=$(vdlvm vol clone bsnap/gi@base "bsnap/k$i" 2>&1); then
        row clones create "$i" "$(grep -o 'in [0-9.]* ms' <<<"$o" | cut -d' ' -f2)" ms
    else
        bad "vol clone k$i: $o"
    fi
done
a1=$(vdlvm vol list bsnap --json | grep -o '"name":"gi"[^}]*"allocated":[0-9]*' | grep -o '[0-9]*$')
row clones space-image 1 "${a0:-0}" bytes
row clones space-20 1 "${a1:-0}" bytes
nch_i=$(( img / 65536 ))
first_args=(write --pattern shuffle --stride 64k --bs 4k --count "$nch_i" --range "0:$img")
for (( r = 1; r <= RUNS; r++ )); do
    lun_of "bsnap/k$r" vdlvm "conf=$conf"
    load "$url" "${first_args[@]}" && row clones first-write-clone "$r" "$iops" iops
    vdlvm vol create "bsnap/f$r" --size "${DATA_MIB}MiB" --thin > /dev/null || bad "cannot create bsnap/f$r"
    lun_of "bsnap/f$r" vdlvm "conf=$conf"
    load "$url" "${first_args[@]}" && row clones first-write-thin "$r" "$iops" iops
done
prev=bsnap/gi@base
for (( i = 1; i <= 32; i++ )); do
    vdlvm vol clone "$prev" "bsnap/d$i" > /dev/null 2>"$tmp/err" || { bad "vol clone d$i: $(cat "$tmp/err")"; break; }
    prev=bsnap/d$i
done
lun_of bsnap/d32 vdlvm "conf=$conf"; url_d=$url
for (( r = 1; r <= RUNS; r++ )); do
    load "$url_d" read --pattern rand --bs 4k --time "$SECS" --range "0:$img" && row clones read-deep "$r" "$iops" iops
    load "$url_gi" read --pattern rand --bs 4k --time "$SECS" --range "0:$img" && row clones read-image "$r" "$iops" iops
done
vdlvm pool check bsnap > "$tmp/check" 2>&1 || bad "pool check after clones: $(cat "$tmp/check")"
note "clones row done after $(( $(date +%s) - t_begin )) s"

# ---- report -----------------------------------------------------------------------------
md=$out/snap-$stamp.md
tsv=$out/snap-$stamp.tsv
cp "$raw" "$tsv"
awk -F'\t' -v runs="$RUNS" -v secs="$SECS" -v lunmib="$LUN_MIB" -v nsnap="$NSNAP" \
    -v datamib="$DATA_MIB" -v cpu="$cpu_model" -v tgtv="$tgt_version" -v fs="$bfs" \
    -v when="$(date -u '+%Y-%m-%d %H:%M UTC')" -v failed="${failed#; }" '
function med(k,   n, i, j, t, a) {
    n = cnt[k]; if (!n) return "";
    for (i = 1; i <= n; i++) a[i] = v[k, i];
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function rng(k,   n, i, lo, hi) {
    n = cnt[k]; if (n < 2) return "";
    lo = hi = v[k, 1];
    for (i = 2; i <= n; i++) { if (v[k, i] < lo) lo = v[k, i]; if (v[k, i] > hi) hi = v[k, i] }
    return sprintf(" (%s-%s)", lo, hi)
}
function ratio(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2f", a / b) : "n/a" }
function verdict(x, goal, above) {
    if (x == "n/a") return "not measured";
    return (above ? x >= goal : x <= goal) ? "met" : "NOT met"
}
NR > 1 { k = $1 "/" $2; cnt[k]++; v[k, cnt[k]] = $4 + 0 }
END {
    printf "# Snapshot benchmark (issue 11), %s\n\n", when
    printf "tgt %s, %s, backing files on %s, one pool of one device file, 64 KiB chunks, 4 MiB extents.\n", tgtv, cpu, fs
    printf "Client build/vdload (libiscsi) at queue depth 32; medians of %d repetitions (min-max in brackets); timed runs %d s; LUNs %d MiB.\n\n", runs, secs, lunmib
    printf "| target | measured | ratio | goal | verdict |\n|---|---|---|---|---|\n"
    g = med("create/g1-lib"); t = med("create/t1-lib")
    x = ratio(t, g)
    printf "| snap create, 1 TiB vs 1 GiB thin (%d MiB written in each) | %s ms vs %s ms (library); wall %s ms vs %s ms | %s | within 2x, < 50 ms | %s%s |\n", datamib, t, g, med("create/t1-wall"), med("create/g1-wall"), x, verdict(x, 2, 0), (t != "" && t < 50 && g < 50) ? ", < 50 ms" : ", NOT < 50 ms"
    c = med("cow/cow"); o = med("cow/overwrite"); x = ratio(c, o)
    printf "| 4 KiB write to shared chunks (COW) vs unshared | %s vs %s IOPS (rdwr %s) | %s | >= 0.5 | %s |\n", c, o, med("cow/rdwr"), x, verdict(x, 0.5, 1)
    w0 = med("many/write-0"); wn = med("many/write-n"); x = ratio(wn, w0)
    printf "| 4 KiB random write, %d snapshots vs none | %s vs %s IOPS (rdwr %s) | %s | >= 0.9 | %s |\n", nsnap, wn, w0, med("many/rdwr-write"), x, verdict(x, 0.9, 1)
    rs = med("many/read-snap"); rv = med("many/read-vol"); x = ratio(rs, rv)
    printf "| 4 KiB random read of snapshot %d of %d vs the volume | %s vs %s IOPS | %s | (no chain: ~1) | - |\n", nsnap, nsnap, rs, rv, x
    printf "| %d snapshots: create, read, delete | create all %s ms (%.1f ms each, with a 4 KiB write load); full read of 3 of them %s / %s / %s IOPS (1 MiB); remove all (shuffled) %s ms; pool check clean | - | all work | %s |\n", nsnap, med("many/create-all"), med("many/create-all") / nsnap, med("many/read-all-s1"), med("many/read-all-s" int(nsnap / 2)), med("many/read-all-s" nsnap), med("many/remove-all"), failed == "" ? "met" : "see failures"
    si = med("clones/space-image"); s20 = med("clones/space-20"); x = ratio(s20, si)
    printf "| 20 clones of a %d MiB image: pool space | %s vs %s bytes (image alone); clone create %s ms each (library) | %s | < 1.1 | %s |\n", datamib, s20, si, med("clones/create"), x, verdict(x, 1.1, 0)
    rd = med("clones/read-deep"); ri = med("clones/read-image"); x = ratio(rd, ri)
    printf "| 4 KiB random read, clone of a clone ... 32 deep vs the image | %s vs %s IOPS | %s | >= 0.9 | %s |\n", rd, ri, x, verdict(x, 0.9, 1)
    fc = med("clones/first-write-clone"); ft = med("clones/first-write-thin"); x = ratio(fc, ft)
    printf "| first 4 KiB write to each chunk of a clone (copy) vs of a new thin volume (allocate) | %s vs %s IOPS | %s | - | - |\n", fc, ft, x
    printf "\nDetails (medians%s):\n\n", (runs > 1 ? ", min-max" : "")
    printf "| row | case | value |\n|---|---|---|\n"
    n = split("create/g1-lib create/t1-lib create/g1-wall create/t1-wall cow/cow cow/overwrite cow/rdwr many/write-0 many/write-n many/rdwr-write many/cow-pass many/read-snap many/read-vol clones/create clones/first-write-clone clones/first-write-thin clones/read-deep clones/read-image", ks, " ")
    for (i = 1; i <= n; i++) { split(ks[i], p, "/"); printf "| %s | %s | %s%s |\n", p[1], p[2], med(ks[i]), rng(ks[i]) }
    printf "\nrdwr: tgt rdwr on a file of the same size on the same file system, same workload: the reference for what tgt itself costs.\n"
    printf "cow: one 4 KiB write per 64 KiB chunk, every chunk once in a shuffled order, right after a snapshot (each write copies its chunk); overwrite: the same writes again.\n"
    printf "many: write-0 before any snapshot, write-n with %d snapshots after one pass that copied every chunk (cow-pass: that pass, every write a copy).\n", nsnap
    if (failed != "") printf "\nFailures: %s\n", failed
}' "$raw" > "$md"
cp "$md" "$out/snap-latest.md"
cp "$tsv" "$out/snap-latest.tsv"
cat "$md"
note "report $md, $(( $(date +%s) - t_begin )) s in all"
if [ "$quick" = 1 ]; then
    for k in create/g1-lib create/t1-lib cow/cow cow/overwrite many/write-0 many/write-n; do
        grep -q "^${k%/*}	${k#*/}	" "$raw" || bad "no numbers for $k"
    done
fi
[ "$failures" = 0 ] || { echo "bench-snap: $failures failure(s): ${failed#; }" >&2; exit 1; }
