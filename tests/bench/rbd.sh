#!/bin/bash
# Usage: tests/bench/rbd.sh BUILD [--quick] [--runs N] [--secs S]
#
# vdlvm on Ceph RBD against tgt's own rbd backing store (Debian package
# tgt-rbd, bs-type rbd), one run, same one-node test cluster
# (tests/integration/ceph-common.sh: mon + mgr + one memstore OSD):
#
#   vdlvm-rbd  a vdlvm linear volume on a pool of one RBD image (librbd
#              aio started from tgtd's main thread: the asynchronous path,
#              issue 14), its own tgtd
#   vdlvm-rbd-sync  the same on a third image, its own tgtd started with
#              VDLVM_ASYNC=0 (the module's worker threads)
#   tgt-rbd    tgt's bs_rbd (synchronous rbd_read/rbd_write from tgt's
#              worker threads) on a second image of the same LUN size, its
#              own tgtd (bs_rbd.so copied into a private module folder)
#
# Both LUNs are written in full before they are measured (never-written
# RBD areas are not read from the OSD).  Workloads at queue depth 32,
# driven by build/vdload (libiscsi): 4 KiB random read, 4 KiB random
# write, 1 MiB sequential read, 1 MiB sequential write.  Each cell is the
# median of RUNS runs (interleaved: repetition, workload, store); ratios
# are vdlvm-rbd / tgt-rbd (and vdlvm-rbd / vdlvm-rbd-sync).  tgtd CPU = utime+stime of the whole tgtd from
# /proc/PID/stat around each run, per 100,000 I/Os.  The machine may be
# shared: the load average before and after is printed with the table.
# Skips (77) without the Ceph packages or tgt-rbd.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/../integration/ceph-common.sh"

RUNS=3 SECS=10 QD=32 LUN_MIB=256
shift || true # BUILD (functions.sh reads $BUILD)
while [ $# -gt 0 ]; do
    case $1 in
        --quick) RUNS=3 SECS=4; shift ;;
        --runs) RUNS=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        *) fail "unknown option $1" ;;
    esac
done
requires_tgtd
requires_vdlvm
requires_file "$BUILD/vdload"
ceph_requires
BS_RBD=$TGT_BSDIR/bs_rbd.so
[ -e "$BS_RBD" ] || skip "tgt's rbd store $BS_RBD is missing: install tgt-rbd (tools/install-deps.sh)"
VDLOAD=$BUILD/vdload
lun=$(( LUN_MIB * 1024 * 1024 ))

ceph_start
# the vdlvm pool's device: the LUN plus the pool's header/metadata space
ceph_image vd $(( LUN_MIB + 32 ))M
ceph_image vs $(( LUN_MIB + 32 ))M
ceph_image tg ${LUN_MIB}M
cat >"$tmp/rb.yaml" <<EOF
pool: rb
extent_size: 4MiB
devices:
  - name: r0
    rbd: {pool: rbd, image: vd, conf: $CEPH_CONF, id: admin}
    timeout: 30s
EOF
vdlvm pool create "$tmp/rb.yaml" >/dev/null || fail "pool create failed"
vdlvm vol create rb/v --size ${LUN_MIB}MiB >/dev/null || fail "vol create failed"
sed -e 's/^pool: rb/pool: rs/' -e 's/image: vd/image: vs/' "$tmp/rb.yaml" >"$tmp/rs.yaml"
vdlvm pool create "$tmp/rs.yaml" >/dev/null || fail "pool create (rs) failed"
vdlvm vol create rs/v --size ${LUN_MIB}MiB >/dev/null || fail "vol create (rs) failed"

declare -A url pid
start_tgtd
tgt_target_new 1 vd || fail "target"
tgt_lun_new 1 1 vdlvm rb/v "conf=$tmp/rb.yaml" || fail "cannot export rb/v"
url[vdlvm-rbd]=$(iscsi_url 1 1) pid[vdlvm-rbd]=$tgtd_pid
VDLVM_ASYNC=0 start_tgtd
tgt_target_new 1 vs || fail "target"
tgt_lun_new 1 1 vdlvm rs/v "conf=$tmp/rs.yaml" || fail "cannot export rs/v"
url[vdlvm-rbd-sync]=$(iscsi_url 1 1) pid[vdlvm-rbd-sync]=$tgtd_pid
mkdir -p "$tmp/bs-rbd"
cp "$BS_RBD" "$tmp/bs-rbd/"
start_tgtd --module-dir "$tmp/bs-rbd"
tgt_target_new 1 tg || fail "target"
tgt_lun_new 1 1 rbd rbd/tg "conf=$CEPH_CONF;id=admin" || fail "cannot export rbd/tg with bs-type rbd"
url[tgt-rbd]=$(iscsi_url 1 1) pid[tgt-rbd]=$tgtd_pid
stores=(vdlvm-rbd tgt-rbd vdlvm-rbd-sync)

for s in "${stores[@]}"; do
    timeout 600 "$VDLOAD" write --pattern seq --bs 1M --qd 8 --count "$LUN_MIB" \
        --quiet --json "${url[$s]}" >/dev/null || fail "filling $s failed"
done
note "both LUNs filled (${LUN_MIB} MiB each)"

workloads=(randread-4k randwrite-4k seqread-1m seqwrite-1m)
declare -A args=(
    [randread-4k]="read --pattern rand --bs 4k"
    [randwrite-4k]="write --pattern rand --bs 4k"
    [seqread-1m]="read --pattern seq --bs 1M"
    [seqwrite-1m]="write --pattern seq --bs 1M"
)
ticks() { local f; read -r -a f <"/proc/$1/stat" || fail "tgtd $1 is gone"; echo $(( f[13] + f[14] )); }
num='([0-9.]+)'
re="\"total\":\\{\"ios\":$num,\"bytes\":$num,\"iops\":$num,\"mbps\":$num,.*\"errors\":([0-9]+)"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
raw=$tmp/raw.tsv
: >"$raw"
for (( rep=1; rep<=RUNS; rep++ )); do
    for w in "${workloads[@]}"; do
        for s in "${stores[@]}"; do
            c0=$(ticks "${pid[$s]}")
            # shellcheck disable=SC2086
            res=$(timeout $(( SECS + 60 )) "$VDLOAD" ${args[$w]} --qd $QD \
                  --time "$SECS" --seed 7 --range "0:$lun" --quiet --json \
                  "${url[$s]}" 2>"$tmp/err") ||
                fail "run $rep $w on $s failed: $(head -c 300 "$tmp/err")"
            c1=$(ticks "${pid[$s]}")
            [[ $res =~ $re ]] || fail "cannot parse vdload output: $res"
            [ "${BASH_REMATCH[5]}" = 0 ] || fail "run $rep $w on $s: ${BASH_REMATCH[5]} I/O errors"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$w" "$rep" "${BASH_REMATCH[3]}" \
                "${BASH_REMATCH[4]}" "$(awk -v t=$(( c1 - c0 )) -v n="${BASH_REMATCH[1]}" \
                'BEGIN { printf "%.2f", n ? t / n * 100000 : 0 }')" >>"$raw"
        done
    done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

echo "vdlvm on RBD vs tgt rbd: one-node memstore cluster, LUN ${LUN_MIB} MiB, qd $QD,"
echo "median of $RUNS runs of ${SECS}s; tgtd CPU in ticks ($(getconf CLK_TCK)/s) per 100k I/Os;"
echo "load average before $load0, after $load1 (the machine may be shared)"
awk -F'\t' -v runs="$RUNS" '
function med(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ k = $1 SUBSEP $2; n[k]++; iops[k, n[k]] = $4; mbps[k, n[k]] = $5; cpu[k, n[k]] = $6
  if (!($2 in seen)) { seen[$2] = 1; order[++nw] = $2 } }
END {
    printf "%-13s %12s %12s %12s %7s %7s %9s %9s %9s %7s\n", "workload", "vdlvm-rbd", "tgt-rbd",
           "vdlvm-sync", "ratio", "/sync", "cpu-vdlvm", "cpu-tgt", "cpu-sync", "cpu-r"
    for (i = 1; i <= nw; i++) {
        w = order[i]
        for (s = 0; s < 3; s++) {
            st = s == 0 ? "vdlvm-rbd" : s == 1 ? "tgt-rbd" : "vdlvm-rbd-sync"; k = st SUBSEP w
            for (j = 1; j <= n[k]; j++) { a[j] = iops[k, j]; b[j] = cpu[k, j]; m[j] = mbps[k, j] }
            I[s] = med(a, n[k]); C[s] = med(b, n[k]); M[s] = med(m, n[k])
        }
        unit = (w ~ /1m/) ? "MB/s" : "IOPS"
        for (s = 0; s < 3; s++) V[s] = unit == "IOPS" ? I[s] : M[s]
        printf "%-13s %7.0f %-4s %7.0f %-4s %7.0f %-4s %6.2fx %6.2fx %9.1f %9.1f %9.1f %6.2fx\n", w,
               V[0], unit, V[1], unit, V[2], unit, V[1] ? V[0] / V[1] : 0, V[2] ? V[0] / V[2] : 0,
               C[0], C[1], C[2], C[1] ? C[0] / C[1] : 0
    }
}' "$raw"
