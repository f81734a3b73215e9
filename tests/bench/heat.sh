#!/bin/bash
# What heat counting (tiering, pool/heat.c) costs per I/O: two tgtds with
# the module, each exporting a linear vdlvm volume on a tmpfs file of its
# own pool; one counts heat (the default), the other runs with
# VDLVM_HEAT=0 (no counters: vd_heat_count returns at once).  4 KiB random
# reads and writes at queue depth 32 (build/vdload), runs interleaved
# (repetition, workload, store), tgtd CPU (utime+stime from /proc/PID/stat)
# per I/O; medians, and the ratio heat / no heat.  Issue 13 asks for the
# CPU per I/O unchanged within noise.
#
#   tests/bench/heat.sh [--runs N] [--time SECONDS]
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires_vdlvm
requires_file "$BUILD/vdload"

RUNS=5 SECS=3
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --time) SECS=$2; shift 2 ;;
        *) echo "usage: $0 [--runs N] [--time SECONDS]" >&2; exit 2 ;;
    esac
done
CLK=$(getconf CLK_TCK)
dir=$(mktemp -d /dev/shm/vdlvm-heat.XXXXXX)
cleanup_fn rm -rf "$dir"
load0=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A url pid
for s in heat noheat; do
    cat > "$dir/$s.yaml" <<EOF
pool: h$s
devices:
  - name: d0
    path: $dir/$s.img
    size: 300MiB
EOF
    vdlvm pool create "$dir/$s.yaml" > /dev/null || fail "pool create $s failed"
    vdlvm vol create "h$s/vol" --size 256MiB > /dev/null || fail "vol create $s failed"
    if [ $s = noheat ]; then
        VDLVM_HEAT=0 start_tgtd
    else
        start_tgtd
    fi
    tgt_target_new 1 "$s" || fail "target $s"
    tgt_lun_new 1 1 vdlvm "h$s/vol" "conf=$dir/$s.yaml" || fail "lun $s"
    url[$s]=$(iscsi_url 1 1)
    pid[$s]=$tgtd_pid
    timeout 120 "$BUILD/vdload" write --pattern seq --bs 1M --qd 8 --count 256 --quiet \
        "${url[$s]}" > /dev/null || fail "prefill $s failed"
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A res
for ((r = 1; r <= RUNS; r++)); do
    for w in read write; do
        for s in heat noheat; do
            c0=$(cpu "${pid[$s]}")
            out=$(timeout $((SECS + 60)) "$BUILD/vdload" $w --pattern rand --bs 4k --qd 32 \
                --time "$SECS" --seed $r --json --quiet "${url[$s]}") || fail "vdload $w $s failed"
            c1=$(cpu "${pid[$s]}")
            ios=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["total"]["ios"])' "$out")
            iops=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["total"]["iops"]))' "$out")
            us=$(python3 -c "print(round(($c1 - $c0) / $CLK * 1e6 / $ios, 2))")
            res[$w,$s]+="$us:$iops "
            note "run $r $w $s: $iops IOPS, tgtd CPU $us us/I/O"
        done
    done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

echo "# Heat counting: tgtd CPU per I/O with and without ($(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "\`tests/bench/heat.sh --runs $RUNS --time $SECS\`; load average $load0 before, $load1 after."
echo
echo "| workload | store | tgtd CPU µs/I/O, median (runs) | IOPS, median |"
echo "|---|---|---|---|"
for w in read write; do
    for s in heat noheat; do
        python3 - "$w" "$s" ${res[$w,$s]} <<'PY'
import statistics, sys
w, s, *v = sys.argv[1:]
c = [float(x.split(':')[0]) for x in v]
i = [int(x.split(':')[1]) for x in v]
print(f"| 4 KiB random {w} | {s} | {statistics.median(c):.2f} ({', '.join(f'{x:.2f}' for x in c)}) | {statistics.median(i)} |")
PY
    done
    python3 - "$w" ${res[$w,heat]} -- ${res[$w,noheat]} <<'PY'
import statistics, sys
w = sys.argv[1]
a = sys.argv[2:sys.argv.index('--')]
b = sys.argv[sys.argv.index('--') + 1:]
ca = statistics.median(float(x.split(':')[0]) for x in a)
cb = statistics.median(float(x.split(':')[0]) for x in b)
print(f"| 4 KiB random {w} | heat / noheat | **{ca / cb:.2f}** | |")
PY
done
