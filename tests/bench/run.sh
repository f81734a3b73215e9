#!/bin/bash
# Usage: tests/bench/run.sh BUILD [--quick] [--out DIR] [--dir BACKING_DIR]
#
# Side-by-side benchmark of tgt's own backing stores and vdlvm, in one run,
# the installed tgtd binary (with BUILD's bs_vdlvm.so), same machine.
# One tgtd in the machine's own namespace (portal 127.0.0.1) serves:
#
#   rdwr      tgt rdwr on data.img
#   aio       tgt aio (O_DIRECT, eventfd completion) on the same data.img
#   null      tgt null: no I/O at all, the protocol's own ceiling
#   vdlvm-1   vdlvm linear volume on a pool of one device file
#   vdlvm-3   vdlvm linear volume on a pool of three device files (same total)
#   vdlvm-mirror  vdlvm mirror, two local legs (when the pool supports it)
#   vdlvm-1-crypt vdlvm-1 with its device encrypted (encrypt: true,
#                 AES-256-XTS); ratios to vdlvm-1
#
# A second tgtd, same binary, started with VDLVM_INLINE=0 (the module's
# main-thread page-cache path off: every command goes to a worker thread):
#
#   vdlvm-1-noinline  vdlvm linear volume on its own pool of one device file
#
# Two emulated nodes in network namespaces of their own (198.51.100.1 nodea,
# 198.51.100.2 nodeb, joined by a veth pair; nothing is added to the
# machine's own namespace); the client runs on nodea:
#
#   rdwr-peer     nodeb's stock tgtd, rdwr on a file, read directly by vdload
#   vdlvm-remote  nodea's tgtd with the module: a vdlvm linear volume on a
#                 pool of one remote device, nodeb's LUN on a second file of
#                 the same size (the pool owns its LUN, so rdwr-peer cannot
#                 use the same one)
#   vdlvm-remote-crypt  the same on a third file of nodeb, the remote
#                 device encrypted; ratios to vdlvm-remote (issue 16's
#                 goal: >= 0.9 of 4 KiB IOPS, >= 0.8 of 1 MiB throughput)
#
# Ratios are to rdwr, except vdlvm-remote's, which are to rdwr-peer.  The
# tgtd CPU of the remote rows is that of both nodes' tgtds together.
# Without network namespaces (ip netns add fails) the remote rows are
# reported as not measured, with the reason; any other failure fails.
#
# Every LUN has the same size and is written in full before it is measured,
# so reads return real data everywhere.  Workloads, all at queue depth 32,
# driven by build/vdload (one initiator, libiscsi):
#   4 KiB random read, 4 KiB random write, 4 KiB sequential write,
#   1 MiB sequential read, 1 MiB sequential write.
# Each cell is the median of RUNS runs (min and max shown); runs are
# interleaved (repetition, workload, store) so drift hits every store alike.
# tgtd CPU = utime+stime of the whole tgtd process from /proc/PID/stat
# around each run, reported as CPU seconds per 100,000 I/Os.
#
# Thin volumes (issue 10), on the first tgtd, RUNS repetitions, each on a
# fresh thin volume and a fresh linear volume of the same pool (4 x the LUN
# size, sparse; removed after the repetition):
#   first-4k    4 KiB writes, one per 64 KiB chunk of the first 2 x LUN
#               bytes, every chunk once in a seeded order (vdload --pattern
#               shuffle --stride 64k): on the thin volume each allocates a
#               chunk
#   over-4k     the same writes again (allocated chunks)
#   read-4k     4 KiB reads of those blocks
#   first-1m    1 MiB sequential writes over the next LUN bytes, never
#               written
# Ratios, each the median of the repetitions, with the issue's goals:
# thin first-4k / thin over-4k (>= 0.5), thin over-4k / linear over-4k
# (>= 0.9), thin read-4k / linear read-4k (>= 0.9), thin first-1m / linear
# first-1m (>= 0.8).  Reported, not enforced (this machine's noise).
#
# Writes DIR/bench-DATE.md, DIR/bench-DATE.png, DIR/bench-DATE.tsv (raw
# runs) and copies them to DIR/latest.{md,png,tsv}.  DIR defaults to
# bench/results (full run) or BUILD/bench-quick (--quick).
#
# --quick: a smoke run (1 run of 1 s per cell, 64 MiB LUNs) for make check;
# it checks that every cell produced numbers and that the report and chart
# were written.  Exit status non-zero if anything failed.
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
test_name=bench
requires_tgtd
requires_file "$BUILD/vdload"
command -v gnuplot >/dev/null || fail "gnuplot not found (apt-get install gnuplot-nox, or make deps)"

if [ "$quick" = 1 ]; then
    RUNS=${BENCH_RUNS:-1} SECS=${BENCH_SECS:-1} LUN_MIB=${BENCH_LUN_MIB:-64}
    out=${out:-$BUILD/bench-quick}
else
    RUNS=${BENCH_RUNS:-3} SECS=${BENCH_SECS:-3} LUN_MIB=${BENCH_LUN_MIB:-512}
    out=${out:-$top/bench/results}
fi
QD=32
SEED=42
# Backing files live on tmpfs by default (BENCH_DIR or --dir to change): the
# point is what each store costs on top of tgt, not this machine's disk.
bench_parent=${BENCH_DIR:-/dev/shm}
mkdir -p "$out" || fail "cannot create $out"
stamp=$(date +%Y%m%d-%H%M%S)
t_begin=$(date +%s)
VDLOAD=$BUILD/vdload
CLK_TCK=$(getconf CLK_TCK)
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
tgt_version=$(dpkg-query -W -f '${Version}' tgt 2>/dev/null || echo unknown)


# ---- stores --------------------------------------------------------------
have_vdlvm=0
if [ -x "$VDLVM" ] && [ -f "$BSDIR/bs_vdlvm.so" ]; then
    have_vdlvm=1
    start_tgtd
else
    note "vdlvm not built ($VDLVM, $BSDIR/bs_vdlvm.so): vdlvm rows skipped"
    start_tgtd --no-module
fi

# Several tgtds: save_tgtd NAME remembers the current one (start_tgtd's
# variables), use_tgtd NAME makes it current again for the tgt_* helpers.
declare -A tgtds=()
save_tgtd() {
    tgtds[$1]="$tgtd_pid $tgtd_ctl $tgtd_addr $tgtd_port ${tgtd_netns:--}"
}
use_tgtd() {
    read -r tgtd_pid tgtd_ctl tgtd_addr tgtd_port tgtd_netns <<<"${tgtds[$1]}"
    [ "$tgtd_netns" != - ] || tgtd_netns=
}
save_tgtd main

stores=()
declare -A store_url=() store_desc=() store_ns=() store_pids=() store_ref=() skipped=()
lun=$(( LUN_MIB * 1024 * 1024 ))
# What add_store records for the stores it adds: the client's network
# namespace ('' = the machine's own), the tgtd PIDs whose CPU is counted,
# the store the ratios compare with.
cur_ns='' cur_pids=$tgtd_pid cur_ref=rdwr

# add_store NAME DESCRIPTION BSTYPE BACKING [BSOPTS]: a target on the
# current tgtd.
add_store() {
    local name=$1 desc=$2 bstype=$3 backing=$4 bsopts=${5:-} tid=$(( ${#stores[@]} + 1 )) msg
    tgt_target_new "$tid" "bench-$name" || fail "cannot create target for $name"
    if ! msg=$(tgt_lun_new "$tid" 1 "$bstype" "$backing" "$bsopts" 2>&1); then
        skipped[$name]="LUN creation failed: $msg"
        note "store $name skipped: $msg"
        return 0
    fi
    stores+=("$name")
    store_url[$name]=$(iscsi_url "$tid" 1)
    store_desc[$name]=$desc
    store_ns[$name]=$cur_ns
    store_pids[$name]=$cur_pids
    store_ref[$name]=$cur_ref
}

bdir=$(mktemp -d "$bench_parent/vdlvm-bench.XXXXXX") || fail "cannot create a directory in $bench_parent"
rm_bdir() { rm -rf "$bdir"; }
cleanup_fn rm_bdir
bfs=$(df --output=fstype "$bdir" | tail -n 1)
fallocate -l "$lun" "$bdir/data.img" || truncate -s "$lun" "$bdir/data.img"
add_store rdwr "tgt rdwr on a file" rdwr "$bdir/data.img"
add_store aio "tgt aio on the same file (O_DIRECT)" aio "$bdir/data.img"
add_store null "tgt null (no I/O)" null "null-$LUN_MIB"

# vdlvm pools: one device, three devices of the same total size, and a
# two-leg mirror.  Devices get 16 MiB beyond the volume for metadata.
# Encrypted pools (CRYPT=1 make_pool ...) use this key file, and
# BENCH_CRYPT_SECTOR (512, default, or 4096) as encryption.sector_size.
bench_key=$tmp/bench.key
crypt_enc="{key_file: $bench_key, sector_size: ${BENCH_CRYPT_SECTOR:-512}}"
(umask 077 && head -c 64 /dev/urandom > "$bench_key")
make_pool() {   # NAME NDEVS DEVSIZE_MIB -> config path, or "" on failure
    local conf=$tmp/$1.yaml i
    {
        echo "pool: $1"
        echo "extent_size: 4M"
        [ "${CRYPT:-0}" != 1 ] || echo "encryption: $crypt_enc"
        echo "devices:"
        for (( i=0; i<$2; i++ )); do
            echo "  - name: d$i"
            echo "    path: $bdir/$1-d$i.img"
            echo "    size: ${3}M"
            [ "${CRYPT:-0}" != 1 ] || echo "    encrypt: true"
        done
    } > "$conf"
    if vdlvm pool create "$conf" >"$tmp/$1.create.log" 2>&1; then
        echo "$conf"
    else
        note "pool $1: $(cat "$tmp/$1.create.log")"
    fi
}
if [ "$have_vdlvm" = 1 ]; then
    conf=$(make_pool p1 1 $(( LUN_MIB + 16 )))
    if [ -n "$conf" ] && vdlvm -c "$conf" vol create p1/vol --size "${LUN_MIB}M" >/dev/null; then
        add_store vdlvm-1 "vdlvm linear, 1 device file" vdlvm p1/vol "conf=$conf"
    else
        skipped[vdlvm-1]="pool or volume creation failed"
    fi
    conf=$(CRYPT=1 make_pool p1c 1 $(( LUN_MIB + 16 )))
    if [ -n "$conf" ] && vdlvm -c "$conf" vol create p1c/vol --size "${LUN_MIB}M" >/dev/null; then
        cur_ref=vdlvm-1
        add_store vdlvm-1-crypt "vdlvm linear, 1 device file, encrypted (AES-256-XTS, ${BENCH_CRYPT_SECTOR:-512}-byte sectors); ratios to vdlvm-1" \
            vdlvm p1c/vol "conf=$conf"
        cur_ref=rdwr
    else
        skipped[vdlvm-1-crypt]="pool or volume creation failed"
    fi
    conf=$(make_pool p3 3 $(( (LUN_MIB / 3 + 3) / 4 * 4 + 12 )))
    if [ -n "$conf" ] && vdlvm -c "$conf" vol create p3/vol --size "${LUN_MIB}M" >/dev/null; then
        add_store vdlvm-3 "vdlvm linear, 3 device files (same total)" vdlvm p3/vol "conf=$conf"
    else
        skipped[vdlvm-3]="pool or volume creation failed"
    fi
    conf=$(make_pool pm 2 $(( LUN_MIB + 16 )))
    if [ -n "$conf" ] && vdlvm -c "$conf" vol create pm/vol --size "${LUN_MIB}M" \
            --layout mirror --copies 2 --allow-same-node >"$tmp/pm.vol.log" 2>&1; then
        add_store vdlvm-mirror "vdlvm mirror, 2 local legs" vdlvm pm/vol "conf=$conf"
    else
        skipped[vdlvm-mirror]="mirror volume not available: $(head -c 200 "$tmp/pm.vol.log" 2>/dev/null)"
    fi
else
    skipped[vdlvm-1]="vdlvm not built"
    skipped[vdlvm-3]="vdlvm not built"
    skipped[vdlvm-mirror]="vdlvm not built"
fi

# ---- vdlvm-1-noinline: same as vdlvm-1 on a second tgtd, inline path off -----
if [ "$have_vdlvm" = 1 ]; then
    VDLVM_INLINE=0 start_tgtd
    save_tgtd noinline
    cur_pids=$tgtd_pid
    conf=$(make_pool p1n 1 $(( LUN_MIB + 16 )))
    if [ -n "$conf" ] && vdlvm -c "$conf" vol create p1n/vol --size "${LUN_MIB}M" >/dev/null; then
        add_store vdlvm-1-noinline "vdlvm linear, 1 device file, on a second tgtd (same binary) started with VDLVM_INLINE=0: every command through the module's worker threads" \
            vdlvm p1n/vol "conf=$conf"
    else
        skipped[vdlvm-1-noinline]="pool or volume creation failed"
    fi
    use_tgtd main
    cur_pids=$tgtd_pid
else
    skipped[vdlvm-1-noinline]="vdlvm not built"
fi

# ---- remote: nodeb (stock tgtd) and nodea (tgtd with the module) in netns ----
# netns_possible: can this machine make network namespaces?  Sets netns_why.
netns_possible() {
    local probe=vdlvm-bench-probe-$$ out
    command -v ip >/dev/null || { netns_why="the ip command (iproute2) is missing"; return 1; }
    if ! out=$(ip netns add "$probe" 2>&1); then
        netns_why="ip netns add failed: $out"
        return 1
    fi
    ip netns delete "$probe" 2>/dev/null || fail "cannot delete the probe namespace $probe"
}
# in_netns NS CMD...: CMD in network namespace NS ('' = this one).
in_netns() {
    local ns=$1
    shift
    if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi
}
if [ "$have_vdlvm" != 1 ]; then
    skipped[rdwr-peer]="vdlvm not built (only measured with vdlvm-remote)"
    skipped[vdlvm-remote]="vdlvm not built"
    skipped[vdlvm-remote-crypt]="vdlvm not built"
elif ! netns_possible; then
    note "SKIP remote rows (rdwr-peer, vdlvm-remote): network namespaces are not possible here: $netns_why"
    skipped[rdwr-peer]="network namespaces not possible here: $netns_why"
    skipped[vdlvm-remote]="network namespaces not possible here: $netns_why"
    skipped[vdlvm-remote-crypt]="network namespaces not possible here: $netns_why"
else
    netns_setup_pair 198.51.100.1/24 198.51.100.2/24
    peer_size=$(( LUN_MIB + 16 ))       # both peer files; the pool's metadata takes 5 MiB
    start_tgtd --netns "$netns_b" --addr "$netns_b_addr" --no-module
    save_tgtd nodeb
    nodeb_pid=$tgtd_pid
    fallocate -l "${peer_size}M" "$bdir/peer-rdwr.img" || truncate -s "${peer_size}M" "$bdir/peer-rdwr.img"
    fallocate -l "${peer_size}M" "$bdir/peer-pool.img" || truncate -s "${peer_size}M" "$bdir/peer-pool.img"
    tgt_target_new 100 nodeb-pool || fail "nodeb: cannot create the target for the pool's LUN"
    tgt_lun_new 100 1 rdwr "$bdir/peer-pool.img" || fail "nodeb: cannot export peer-pool.img"
    url_peer_pool=$(iscsi_url 100 1)
    fallocate -l "${peer_size}M" "$bdir/peer-crypt.img" || truncate -s "${peer_size}M" "$bdir/peer-crypt.img"
    tgt_target_new 101 nodeb-crypt || fail "nodeb: cannot create the target for the encrypted pool's LUN"
    tgt_lun_new 101 1 rdwr "$bdir/peer-crypt.img" || fail "nodeb: cannot export peer-crypt.img"
    url_peer_crypt=$(iscsi_url 101 1)
    cconf=$tmp/prc.yaml
    cat > "$cconf" <<EOF
pool: prc
extent_size: 4M
encryption: $crypt_enc
devices:
  - name: b0
    iscsi: $url_peer_crypt
    node: nodeb
    encrypt: true
EOF
    in_netns "$netns_a" timeout 120 "$VDLVM" pool create "$cconf" >"$tmp/prc.create.log" 2>&1 ||
        fail "pool prc on nodeb's LUN: $(cat "$tmp/prc.create.log")"
    in_netns "$netns_a" timeout 120 "$VDLVM" -c "$cconf" vol create prc/vol --size "${LUN_MIB}M" \
        >"$tmp/prc.vol.log" 2>&1 || fail "volume prc/vol: $(cat "$tmp/prc.vol.log")"
    conf=$tmp/pr.yaml
    cat > "$conf" <<EOF
pool: pr
extent_size: 4M
devices:
  - name: b0
    iscsi: $url_peer_pool
    node: nodeb
EOF
    in_netns "$netns_a" timeout 120 "$VDLVM" pool create "$conf" >"$tmp/pr.create.log" 2>&1 ||
        fail "pool pr on nodeb's LUN: $(cat "$tmp/pr.create.log")"
    in_netns "$netns_a" timeout 120 "$VDLVM" -c "$conf" vol create pr/vol --size "${LUN_MIB}M" \
        >"$tmp/pr.vol.log" 2>&1 || fail "volume pr/vol: $(cat "$tmp/pr.vol.log")"
    start_tgtd --netns "$netns_a" --addr "$netns_a_addr"
    save_tgtd nodea
    cur_ns=$netns_a cur_pids="$tgtd_pid $nodeb_pid"
    use_tgtd nodeb
    cur_ref=rdwr
    add_store rdwr-peer "nodeb's stock tgtd, rdwr on a file ($peer_size MiB), read directly by vdload on nodea over the veth pair" \
        rdwr "$bdir/peer-rdwr.img"
    use_tgtd nodea
    cur_ref=rdwr-peer
    add_store vdlvm-remote "nodea's tgtd: vdlvm linear on a pool of one remote device, nodeb's rdwr LUN on a second file of the same size (the pool owns that LUN, so it cannot be rdwr-peer's)" \
        vdlvm pr/vol "conf=$conf"
    cur_ref=vdlvm-remote
    add_store vdlvm-remote-crypt "nodea's tgtd: vdlvm-remote with its remote device encrypted (AES-256-XTS, ${BENCH_CRYPT_SECTOR:-512}-byte sectors), nodeb's rdwr LUN on a third file; ratios to vdlvm-remote" \
        vdlvm prc/vol "conf=$cconf"
    for s in rdwr-peer vdlvm-remote vdlvm-remote-crypt; do
        [ -z "${skipped[$s]:-}" ] || fail "$s: ${skipped[$s]}"
    done
    use_tgtd main
    cur_ns='' cur_pids=$tgtd_pid cur_ref=rdwr
fi
[ ${#stores[@]} -gt 0 ] || fail "no store could be exported"
# BENCH_ONLY="rdwr vdlvm-1 ...": measure only these stores (and no thin
# volumes, unless the list names "thin": BENCH_ONLY="null thin" measures
# the thin rows and the cheap null row only), e.g. one row and its ref on
# a busy machine.
if [ -n "${BENCH_ONLY:-}" ]; then
    sel=()
    for s in "${stores[@]}"; do
        if [[ " $BENCH_ONLY " == *" $s "* ]]; then sel+=("$s"); else skipped[$s]="not selected (BENCH_ONLY)"; fi
    done
    stores=("${sel[@]}")
    [ ${#stores[@]} -gt 0 ] || fail "BENCH_ONLY selects no store of: ${!store_url[*]}"
fi

# ---- prefill: every LUN written in full --------------------------------
for s in "${stores[@]}"; do
    [ "$s" = null ] && continue
    [ "$s" = aio ] && continue            # same file as rdwr
    in_netns "${store_ns[$s]}" timeout $(( SECS + 120 )) "$VDLOAD" write --pattern seq --bs 1M --qd 8 \
        --count "$LUN_MIB" --range "0:$lun" --quiet "${store_url[$s]}" >/dev/null ||
        fail "prefill of $s failed"
done
note "prefilled ${#stores[@]} stores of $LUN_MIB MiB in $(( $(date +%s) - t_begin )) s"

# ---- runs ------------------------------------------------------------------
# workload name, vdload arguments
workloads=(randread-4k randwrite-4k seqwrite-4k seqread-1m seqwrite-1m)
declare -A wl_args=(
    [randread-4k]="read --pattern rand --bs 4k"
    [randwrite-4k]="write --pattern rand --bs 4k"
    [seqwrite-4k]="write --pattern seq --bs 4k"
    [seqread-1m]="read --pattern seq --bs 1M"
    [seqwrite-1m]="write --pattern seq --bs 1M"
)
declare -A wl_title=(
    [randread-4k]="4 KiB random read" [randwrite-4k]="4 KiB random write"
    [seqwrite-4k]="4 KiB sequential write" [seqread-1m]="1 MiB sequential read"
    [seqwrite-1m]="1 MiB sequential write"
)

# This machine forks slowly (~25 ms a process): the loop below spawns only
# timeout+vdload per run and parses with bash; one awk makes the report.
cpu_ticks() {   # STORE: sets $ticks (sum) and $each: utime+stime of its tgtds in clock ticks
    local f p
    ticks=0 each=
    for p in ${store_pids[$1]}; do
        read -r -a f < "/proc/$p/stat" || fail "tgtd $p is gone"
        ticks=$(( ticks + f[13] + f[14] ))
        each+="${each:+,}$p:$(( f[13] + f[14] ))"
    done
}
num='([0-9.]+)'
total_re="\"seconds\":$num,.*\"total\":\\{\"ios\":$num,\"bytes\":$num,\"iops\":$num,\"mbps\":$num,\"lat_us\":\\{\"mean\":$num,\"p50\":$num,\"p99\":$num,.*\"errors\":([0-9]+)"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
raw=$tmp/raw.tsv
printf 'store\tworkload\trun\tios\tiops\tmbps\tp50_us\tp99_us\ttgtd_ticks\terrors\tseconds\ttgtd_ticks_each\n' > "$raw"
failures=0 failed_runs=
for (( rep=1; rep<=RUNS; rep++ )); do
    for w in "${workloads[@]}"; do
        for s in "${stores[@]}"; do
            # A run whose client fails to start or log in (not one that saw
            # I/O errors: those always count) is tried once more, said so.
            ok=0
            for try in 1 2; do
                cpu_ticks "$s"; c0=$ticks e0=$each
                # shellcheck disable=SC2086
                if res=$(in_netns "${store_ns[$s]}" timeout $(( SECS + 60 )) "$VDLOAD" ${wl_args[$w]} \
                           --qd $QD --time "$SECS" --seed $SEED \
                           --range "0:$lun" --json "${store_url[$s]}" 2>"$tmp/err"); then
                    ok=1
                    break
                fi
                [ "$try" = 1 ] && note "run $rep $w on $s failed, trying once more: $(head -c 300 "$tmp/err")"
            done
            if [ "$ok" = 0 ]; then
                note "run $rep $w on $s failed: $(<"$tmp/err")"
                failed_runs+="; run $rep $w on $s: $(head -c 300 "$tmp/err")"
                failures=$(( failures + 1 ))
                continue
            fi
            cpu_ticks "$s"
            if ! [[ $res =~ $total_re ]]; then
                note "run $rep $w on $s: cannot parse vdload output: $res"
                failed_runs+="; run $rep $w on $s: cannot parse vdload output"
                failures=$(( failures + 1 ))
                continue
            fi
            m=("${BASH_REMATCH[@]}")
            printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$w" "$rep" "${m[2]}" \
                "${m[4]}" "${m[5]}" "${m[7]}" "${m[8]}" "$(( ticks - c0 ))" "${m[9]}" "${m[1]}" \
                "$e0 -> $each" >> "$raw"
            [ "${m[9]}" = 0 ] || { note "run $rep $w on $s: ${m[9]} errors"; failures=$(( failures + 1 ))
                                    failed_runs+="; run $rep $w on $s: ${m[9]} errors"; }
        done
    done
    note "repetition $rep of $RUNS done after $(( $(date +%s) - t_begin )) s"
done

# ---- thin volumes -------------------------------------------------------------
thin_raw=$tmp/thin.tsv
printf 'volume\tworkload\trun\tios\tiops\tmbps\tp50_us\tp99_us\terrors\n' > "$thin_raw"
thin_skip=
[ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" thin "* ]] || thin_skip="not selected (BENCH_ONLY)"
thin_workloads=(first-4k over-4k read-4k first-1m)
# thin_run VOLKIND URL WORKLOAD REP: one vdload run, a row in $thin_raw.
thin_run() {
    local kind=$1 u=$2 w=$3 r=$4 args res m
    case $w in
        first-4k|over-4k) args="write --pattern shuffle --stride 64k --bs 4k --count $(( 2 * lun / 65536 )) --range 0:$(( 2 * lun ))" ;;
        read-4k) args="read --pattern shuffle --stride 64k --bs 4k --count $(( 2 * lun / 65536 )) --range 0:$(( 2 * lun ))" ;;
        first-1m) args="write --pattern seq --bs 1M --count $LUN_MIB --range $(( 2 * lun )):$lun" ;;
    esac
    # shellcheck disable=SC2086
    if ! res=$(timeout 300 "$VDLOAD" $args --qd $QD --seed $SEED --json "$u" 2>"$tmp/err"); then
        note "thin run $r $w on $kind failed: $(head -c 300 "$tmp/err")"
        failed_runs+="; thin run $r $w on $kind: $(head -c 300 "$tmp/err")"
        failures=$(( failures + 1 ))
        return 0
    fi
    if ! [[ $res =~ $total_re ]]; then
        failed_runs+="; thin run $r $w on $kind: cannot parse vdload output"
        failures=$(( failures + 1 ))
        return 0
    fi
    m=("${BASH_REMATCH[@]}")
    printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$w" "$r" "${m[2]}" "${m[4]}" \
        "${m[5]}" "${m[7]}" "${m[8]}" "${m[9]}" >> "$thin_raw"
    [ "${m[9]}" = 0 ] || { failures=$(( failures + 1 )); failed_runs+="; thin run $r $w on $kind: ${m[9]} errors"; }
}
if [ "$have_vdlvm" = 1 ]; then
    use_tgtd main
    tconf=$(make_pool pt 1 $(( 8 * LUN_MIB + 64 )))
    [ -n "$tconf" ] || thin_skip="pool creation failed"
    for (( rep=1; rep<=RUNS && ${#thin_skip} == 0; rep++ )); do
        if ! vdlvm -c "$tconf" vol create pt/thin --size "$(( 4 * LUN_MIB ))M" --thin >"$tmp/pt.log" 2>&1; then
            thin_skip="thin volume not available: $(head -c 200 "$tmp/pt.log")"
            break
        fi
        vdlvm -c "$tconf" vol create pt/lin --size "$(( 4 * LUN_MIB ))M" >"$tmp/pt.log" 2>&1 ||
            fail "linear volume for the thin runs: $(cat "$tmp/pt.log")"
        ttid=$(( 200 + 2 * rep )) ltid=$(( 201 + 2 * rep ))
        tgt_target_new $ttid bench-thin-$rep && tgt_lun_new $ttid 1 vdlvm pt/thin "conf=$tconf" ||
            fail "cannot export pt/thin"
        tgt_target_new $ltid bench-lin-$rep && tgt_lun_new $ltid 1 vdlvm pt/lin "conf=$tconf" ||
            fail "cannot export pt/lin"
        for w in "${thin_workloads[@]}"; do
            thin_run linear "$(iscsi_url $ltid 1)" "$w" "$rep"
            thin_run thin "$(iscsi_url $ttid 1)" "$w" "$rep"
        done
        talloc=$(vdlvm -c "$tconf" status pt/thin --json | grep -o '"allocated":[0-9]*' | head -n 1 | cut -d: -f2)
        note "thin repetition $rep: thin volume allocated ${talloc:-?} bytes"
        for t in $ttid $ltid; do
            tgt_adm --lld iscsi --mode target --op delete --tid $t --force >/dev/null ||
                fail "cannot delete target $t"
        done
        for v in pt/thin pt/lin; do
            ok=0
            for (( i=0; i<50; i++ )); do
                vdlvm -c "$tconf" vol remove $v >"$tmp/pt.log" 2>&1 && { ok=1; break; }
                sleep 0.2
            done
            [ "$ok" = 1 ] || fail "cannot remove $v: $(cat "$tmp/pt.log")"
        done
    done
else
    thin_skip="vdlvm not built"
fi
[ -z "$thin_skip" ] || note "thin volumes not measured: $thin_skip"

# ---- summary: markdown tables and chart data, one awk ----------------------
md=$tmp/report.md
dat=$tmp/chart.dat
titles=
for w in "${workloads[@]}"; do titles+="$w=${wl_title[$w]};"; done
{
    echo "# vdlvm benchmark, $(date '+%Y-%m-%d %H:%M')"
    echo
    echo "Machine: $(nproc) CPUs ($cpu_model), kernel $(uname -r);" \
         "tgt $tgt_version; one tgtd for the local stores (a second one for vdlvm-1-noinline, two more in network namespaces for the remote rows);" \
         "client build/vdload (libiscsi), queue depth $QD."
    echo "Backing files on $bfs ($bench_parent); LUNs of $LUN_MIB MiB, written in full before measuring;" \
         "each cell is the median of $RUNS run(s) of $SECS s (min–max in brackets);" \
         "runs interleaved across stores."
    echo "tgtd CPU: user+system seconds of the whole tgtd process per 100,000 I/Os" \
         "(/proc/PID/stat, $CLK_TCK ticks/s); for rdwr-peer and vdlvm-remote, nodea's and nodeb's tgtds together."
    echo "Load average before the runs: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)" \
         "(anything else running on the machine skews every row)."
    [ "$quick" = 1 ] && echo && echo "**Quick smoke run: numbers are not meaningful.**"
    echo
    echo "Stores:"
    for s in "${stores[@]}"; do echo "- \`$s\`: ${store_desc[$s]}"; done
    echo
    echo "Ratios (\"vs ref\") are to the row named in the ref column: rdwr for the stores on this machine's" \
         "loopback, rdwr-peer for vdlvm-remote (rdwr-peer's own ratio to rdwr shows what the veth path costs)," \
         "vdlvm-1 for vdlvm-1-crypt and vdlvm-remote for vdlvm-remote-crypt (the cost of encryption)."

    for s in "${!skipped[@]}"; do echo "- \`$s\`: not measured: ${skipped[$s]}"; done
    refs=
    for s in "${stores[@]}"; do refs+="${store_ref[$s]} "; done
    awk -F'\t' -v stores="${stores[*]}" -v refs="$refs" -v wls="${workloads[*]}" -v titles="$titles" \
        -v hz="$CLK_TCK" -v dat="$dat" '
    function stats(a, k, cnt,    i, j, t, v) {     # sets MED MIN MAX
        for (i = 1; i <= cnt; i++) v[i] = a[k, i] + 0
        for (i = 2; i <= cnt; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
        if (cnt == 0) { MED = MIN = MAX = "-"; return }
        MED = (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
        MIN = v[1]; MAX = v[cnt]
    }
    function fmt(v) {
        if (v == "-") return "-"
        if (v >= 100) return sprintf("%.0f", v)
        if (v >= 10) return sprintf("%.1f", v)
        return sprintf("%.2f", v)
    }
    function ratio(a, b) { return (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
    NR > 1 {
        k = $1 SUBSEP $2; i = ++n[k]
        iops[k, i] = $5; mbps[k, i] = $6; p50[k, i] = $7; p99[k, i] = $8
        cpu[k, i] = $4 > 0 ? $9 / hz / $4 * 100000 : 0
    }
    END {
        ns = split(stores, S, " "); nw = split(wls, W, " "); split(refs, R, " ")
        nt = split(titles, T, ";")
        for (i = 1; i <= nt; i++) { p = index(T[i], "="); if (p) title[substr(T[i], 1, p - 1)] = substr(T[i], p + 1) }
        for (wi = 1; wi <= nw; wi++) for (si = 1; si <= ns; si++) {
            k = S[si] SUBSEP W[wi]; c = n[k] + 0
            stats(iops, k, c); Mi[k] = MED; Li[k] = MIN; Hi[k] = MAX
            stats(mbps, k, c); Mm[k] = MED
            stats(p50, k, c); M5[k] = MED
            stats(p99, k, c); M9[k] = MED
            stats(cpu, k, c); Mc[k] = MED; Lc[k] = MIN; Hc[k] = MAX
        }
        for (wi = 1; wi <= nw; wi++) {
            w = W[wi]; z = "null" SUBSEP w
            printf "\n## %s\n\n", title[w]
            print "| store | IOPS | MB/s | p50 µs | p99 µs | tgtd CPU s / 100k I/O | ref | IOPS vs ref | CPU/I/O vs ref | CPU/I/O vs null |"
            print "|---|---|---|---|---|---|---|---|---|---|"
            for (si = 1; si <= ns; si++) {
                k = S[si] SUBSEP w; r = R[si] SUBSEP w
                printf "| %s | %s (%s–%s) | %s | %s | %s | %s (%s–%s) | %s | %s | %s | %s |\n", S[si],
                    fmt(Mi[k]), fmt(Li[k]), fmt(Hi[k]), fmt(Mm[k]), fmt(M5[k]), fmt(M9[k]),
                    fmt(Mc[k]), fmt(Lc[k]), fmt(Hc[k]), R[si],
                    ratio(Mi[k], (r in Mi) ? Mi[r] : "-"), ratio(Mc[k], (r in Mc) ? Mc[r] : "-"),
                    ratio(Mc[k], (z in Mc) ? Mc[z] : "-")
            }
        }
        # chart data: block 0 IOPS relative to rdwr, block 1 CPU s per 100k I/O
        for (b = 0; b < 2; b++) {
            printf "workload" > dat
            for (si = 1; si <= ns; si++) printf "\t%s", S[si] > dat
            printf "\n" > dat
            for (wi = 1; wi <= nw; wi++) {
                printf "%s", W[wi] > dat
                for (si = 1; si <= ns; si++) {
                    k = S[si] SUBSEP W[wi]; r = R[si] SUBSEP W[wi]
                    printf "\t%s", (b == 0 ? ratio(Mi[k], (r in Mi) ? Mi[r] : "-") : (Mc[k] == "-" ? "-" : sprintf("%.3f", Mc[k]))) > dat
                }
                printf "\n" > dat
            }
            printf "\n\n" > dat
        }
    }' "$raw"
    echo
    echo "## Thin volumes"
    echo
    if [ -n "$thin_skip" ]; then
        echo "Not measured: $thin_skip."
    else
        echo "A fresh thin volume (chunks of 64 KiB) and a fresh linear volume of the same pool per repetition;" \
             "first-4k: one 4 KiB write per chunk of the first 2 x $LUN_MIB MiB, each chunk once (vdload --pattern shuffle --stride 64k);" \
             "over-4k: the same writes again; read-4k: reads of those blocks; first-1m: 1 MiB sequential writes" \
             "over the next, never-written $LUN_MIB MiB.  Median IOPS of $RUNS repetition(s) (min–max)."
        echo
        awk -F'\t' -v wls="${thin_workloads[*]}" '
        function stats(a, k, cnt,    i, j, t, v) {
            for (i = 1; i <= cnt; i++) v[i] = a[k, i] + 0
            for (i = 2; i <= cnt; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
            if (cnt == 0) { MED = MIN = MAX = "-"; return }
            MED = (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
            MIN = v[1]; MAX = v[cnt]
        }
        function fmt(v) { return v == "-" ? "-" : (v >= 100 ? sprintf("%.0f", v) : sprintf("%.1f", v)) }
        function ratio(a, b) { return (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
        function goal(r, g) { return r == "-" ? "not measured" : (r + 0 >= g ? "met" : "**not met**") }
        NR > 1 { k = $1 SUBSEP $2; i = ++n[k]; iops[k, i] = $5; mbps[k, i] = $6 }
        END {
            nw = split(wls, W, " ")
            print "| workload | linear IOPS | thin IOPS | thin vs linear |"
            print "|---|---|---|---|"
            for (wi = 1; wi <= nw; wi++) {
                for (v = 0; v < 2; v++) {
                    vol = v ? "thin" : "linear"; k = vol SUBSEP W[wi]
                    stats(iops, k, n[k] + 0); M[vol, W[wi]] = MED; L[vol, W[wi]] = MIN; H[vol, W[wi]] = MAX
                }
                printf "| %s | %s (%s–%s) | %s (%s–%s) | %s |\n", W[wi],
                    fmt(M["linear", W[wi]]), fmt(L["linear", W[wi]]), fmt(H["linear", W[wi]]),
                    fmt(M["thin", W[wi]]), fmt(L["thin", W[wi]]), fmt(H["thin", W[wi]]),
                    ratio(M["thin", W[wi]], M["linear", W[wi]])
            }
            print ""
            print "| ratio (issue 10) | value | goal | |"
            print "|---|---|---|---|"
            r = ratio(M["thin", "first-4k"], M["thin", "over-4k"])
            printf "| thin 4 KiB random first write / thin overwrite of the same blocks | %s | >= 0.5 | %s |\n", r, goal(r, 0.5)
            r = ratio(M["thin", "over-4k"], M["linear", "over-4k"])
            printf "| thin 4 KiB overwrite / linear | %s | >= 0.9 | %s |\n", r, goal(r, 0.9)
            r = ratio(M["thin", "read-4k"], M["linear", "read-4k"])
            printf "| thin 4 KiB read of allocated blocks / linear | %s | >= 0.9 | %s |\n", r, goal(r, 0.9)
            r = ratio(M["thin", "first-1m"], M["linear", "first-1m"])
            printf "| thin 1 MiB sequential first write / linear | %s | >= 0.8 | %s |\n", r, goal(r, 0.8)
        }' "$thin_raw"
    fi
    echo
    echo "Chart: \`bench-$stamp.png\` (top: IOPS relative to the ref row; bottom: tgtd CPU seconds" \
         "per 100,000 I/Os, log scale).  Raw runs: \`bench-$stamp.tsv\`."
    echo "Reproduce with \`make bench\` (full) or \`tests/bench/run.sh build --quick\` (smoke)."
    echo "Whole run took $(( $(date +%s) - t_begin )) s."
} > "$md"

# ---- chart -------------------------------------------------------------------
png=$tmp/chart.png
n=${#stores[@]}
gnuplot > "$tmp/gnuplot.log" 2>&1 <<EOF || { cat "$tmp/gnuplot.log" >&2; fail "gnuplot failed"; }
set terminal pngcairo size 1100,900 font "sans,10" noenhanced
set output "$png"
set datafile separator "\t"
set datafile missing "-"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical
set grid ytics
set yrange [0:*]
# One distinct colour per store (the default set repeats after 8).
set linetype 1 lc rgb "#4e79a7"
set linetype 2 lc rgb "#59a14f"
set linetype 3 lc rgb "#bab0ac"
set linetype 4 lc rgb "#f28e2b"
set linetype 5 lc rgb "#edc948"
set linetype 6 lc rgb "#76b7b2"
set linetype 7 lc rgb "#e15759"
set linetype 8 lc rgb "#9c755f"
set linetype 9 lc rgb "#b07aa1"
set linetype 10 lc rgb "#ff9da7"
set linetype 11 lc rgb "#000000"
set linetype 12 lc rgb "#8cd17d"
set linetype cycle 12
set multiplot layout 2,1 title "vdlvm vs tgt backing stores, QD $QD, $(nproc) CPUs (median of $RUNS x ${SECS}s)"
set title "IOPS relative to tgt rdwr; vdlvm-remote relative to rdwr-peer (higher is better)"
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black"
plot for [i=2:$(( n + 1 ))] "$dat" index 0 using i:xtic(1) title columnheader(i)
unset arrow 1
set title "tgtd CPU seconds per 100,000 I/Os (lower is better)"
set logscale y
set yrange [*:*]
plot for [i=2:$(( n + 1 ))] "$dat" index 1 using i:xtic(1) title columnheader(i)
unset multiplot
EOF

cp "$md" "$out/bench-$stamp.md" && cp "$png" "$out/bench-$stamp.png" &&
    cp "$raw" "$out/bench-$stamp.tsv" && cp "$thin_raw" "$out/bench-$stamp-thin.tsv" &&
    cp "$thin_raw" "$out/latest-thin.tsv" &&
    cp "$md" "$out/latest.md" && cp "$png" "$out/latest.png" && cp "$raw" "$out/latest.tsv" ||
    fail "cannot write results to $out"
cat "$md"
note "results: $out/bench-$stamp.md, $out/bench-$stamp.png ($(( $(date +%s) - t_begin )) s)"

# ---- checks (the smoke test) -----------------------------------------------
[ "$failures" = 0 ] || fail "$failures run(s) failed$failed_runs"
cells=$(awk -F'\t' 'NR > 1 && $5 > 0' "$raw" | wc -l)
[ "$cells" = $(( RUNS * ${#workloads[@]} * ${#stores[@]} )) ] ||
    fail "expected $(( RUNS * ${#workloads[@]} * ${#stores[@]} )) runs with IOPS > 0, got $cells"
[ -s "$out/bench-$stamp.png" ] || fail "no chart written"
if [ -z "$thin_skip" ]; then
    tcells=$(awk -F'\t' 'NR > 1 && $5 > 0' "$thin_raw" | wc -l)
    [ "$tcells" = $(( RUNS * ${#thin_workloads[@]} * 2 )) ] ||
        fail "thin volumes: expected $(( RUNS * ${#thin_workloads[@]} * 2 )) runs with IOPS > 0, got $tcells"
fi
exit 0
