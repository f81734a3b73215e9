# Shared shell functions for vdlvm tests (sourced, nbdkit style).
#
#   source "$(dirname "$0")/../functions.sh"
#   requires qemu-img --version            # skip (exit 77) unless it works
#   requires_vdlvm                         # built vdlvm + bs_vdlvm.so present
#   start_tgtd                             # private control port and portal
#   tgt_target_new 1 vol0                  # target iqn...:vol0, bound to ALL
#   tgt_lun_new 1 1 vdlvm pool0/vol0 "conf=$tmp/pool0.yaml"
#   url=$(iscsi_url 1 1)
#
# Every test gets a private temporary directory $tmp (mktemp, removed on exit)
# and a private VDLVM_RUNDIR ($tmp/run) for pool locks and control sockets;
# VDLVM_CONFDIR=$tmp (pool definitions written by make_pool_conf) and
# VDLVM_STATEDIR=$tmp/state (the registry of pools defined elsewhere).
# Everything a test starts is stopped by PID from the EXIT trap, in reverse
# order of registration (cleanup_fn).  Loops are bounded; waits poll.
#
# Environment: BUILD (build directory; default <repo>/build), KEEP_TMP=1
# keeps $tmp, VERBOSE=1 traces the test.

top_srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$top_srcdir/build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")
VDLVM=$BUILD/vdlvm
BSDIR=$BUILD/backing-store
TGT_BSDIR=/usr/lib/tgt/backing-store
IQN_PREFIX=iqn.2024-01.org.vdlvm.test
test_name=$(basename "$0" .sh)
# tests/conformance/run.sh, tests/bench/run.sh: name them by their folder.
[ "$test_name" != run ] || test_name=$(basename "$(cd "$(dirname "$0")" && pwd)")

[ "${VERBOSE:-0}" = 1 ] && set -x

# ---- messages ------------------------------------------------------------
note() { echo "$test_name: $*" >&2; }
fail() { echo "$test_name: FAIL: $*" >&2; exit 1; }
skip() { echo "$test_name: SKIP: $*" >&2; exit 77; }

# ---- cleanup (LIFO) --------------------------------------------------------
_cleanup_fns=()
# cleanup_fn CMD [ARGS...]: run CMD ARGS at exit (last registered runs first).
cleanup_fn() {
    local q
    q=$(printf '%q ' "$@")
    _cleanup_fns+=("$q")
}

_run_cleanup() {
    local status=$? i
    set +e
    [ "$status" = 0 ] || [ "$status" = 77 ] || _test_failing=1
    trap '' INT TERM HUP
    for (( i=${#_cleanup_fns[@]}-1; i>=0; i-- )); do
        eval "${_cleanup_fns[i]}"
    done
    _cleanup_fns=()
    exit "$status"
}
trap _run_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# ---- skipping --------------------------------------------------------------
# requires CMD [ARGS...]: skip the test unless CMD ARGS succeeds.
requires() {
    ( "$@" ) </dev/null >/dev/null 2>&1 ||
        skip "test skipped because '$*' failed"
}
requires_root() { [ "$(id -u)" = 0 ] || skip "test needs root"; }
requires_file() { [ -e "$1" ] || skip "test needs $1 (build it with make all)"; }
# The tgtd harness: root, tgtd/tgtadm, unshare, and the built module.
requires_tgtd() {
    requires_root
    requires command -v tgtd
    requires command -v tgtadm
    requires command -v unshare
    requires command -v ss
    [ -d "$TGT_BSDIR" ] || skip "$TGT_BSDIR does not exist (run tools/install-deps.sh)"
}
requires_vdlvm() {
    requires_file "$VDLVM"
    requires_file "$BSDIR/bs_vdlvm.so"
}

# ---- temporary directory ---------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vdlvm-$test_name.XXXXXX")
_rm_tmp() {
    if [ "${KEEP_TMP:-0}" = 1 ]; then note "kept $tmp"; else rm -rf "$tmp"; fi
}
cleanup_fn _rm_tmp
export VDLVM_RUNDIR=$tmp/run
mkdir -p "$VDLVM_RUNDIR"
# Pool definitions: `vdlvm ... POOL` without -c reads $tmp/POOL.yaml.
export VDLVM_CONFDIR=$tmp
export VDLVM_STATEDIR=$tmp/state   # registry of pools created with -c FILE

# ---- polling ---------------------------------------------------------------
# wait_for SECONDS CMD [ARGS...]: poll CMD every 0.1 s until it succeeds;
# returns 1 after SECONDS.
wait_for() {
    local secs=$1 i n
    shift
    n=$(( secs * 10 ))
    for (( i=0; i<n; i++ )); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    "$@" >/dev/null 2>&1
}

# wait_started FILE PID [SECONDS]: wait until a load started with
# `vdload ... --started FILE` has completed its first command (FILE exists);
# returns 1 when PID exits first or after SECONDS (default 60).
wait_started() {
    local file=$1 pid=$2 secs=${3:-60} i
    for (( i=0; i<secs*10; i++ )); do
        [ -e "$file" ] && return 0
        kill -0 "$pid" 2>/dev/null || { [ -e "$file" ]; return; }
        sleep 0.1
    done
    [ -e "$file" ]
}

# ---- free ports ------------------------------------------------------------
# In namespace NS (or the current one when empty), is TCP port P unused?
_port_is_free() {
    local ns=$1 p=$2 out
    if [ -n "$ns" ]; then
        out=$(ip netns exec "$ns" ss -Htan "( sport = :$p )" 2>/dev/null) || return 1
    else
        out=$(ss -Htan "( sport = :$p )" 2>/dev/null) || return 1
    fi
    [ -z "$out" ]
}
# A control port whose socket nobody holds.
_ctl_is_free() {
    local n=$1
    [ -e "/var/run/tgtd/socket.$n" ] || [ -e "/var/run/tgtd/socket.$n.lock" ] || return 0
    # Left behind by an earlier tgtd?  Free if no live tgtd answers on it.
    ! timeout 5 tgtadm -C "$n" --mode sys --op show >/dev/null 2>&1
}
pick_port() {
    local ns=${1:-} i p
    for (( i=0; i<200; i++ )); do
        p=$(( 20000 + RANDOM % 30000 ))
        _port_is_free "$ns" "$p" && { echo "$p"; return 0; }
    done
    return 1
}
pick_ctl_port() {
    local i n
    for (( i=0; i<200; i++ )); do
        n=$(( 1000 + RANDOM % 30000 ))
        _ctl_is_free "$n" && { echo "$n"; return 0; }
    done
    return 1
}

# ---- tgtd ------------------------------------------------------------------
# start_tgtd [--netns NS] [--addr IP] [--module-dir DIR] [--no-module] [-- EXTRA TGTD ARGS]
#
# Starts `tgtd -f -C N --iscsi portal=IP:PORT` in a private mount namespace
# with DIR (default $BUILD/backing-store) bind-mounted over
# /usr/lib/tgt/backing-store, so the freshly built module is loaded without
# installing it; with --no-module, stock tgtd (empty module folder).  With
# --netns NS it runs inside network namespace NS (ip netns exec), e.g. for a
# remote peer; --addr defaults to 127.0.0.1.
#
# Sets tgtd_pid, tgtd_ctl, tgtd_addr, tgtd_port, tgtd_log, tgtd_netns (the
# "current" tgtd that tgt_* helpers use; save them to drive several) and
# registers stop_tgtd for cleanup.  Retries with other ports if tgtd fails to
# bind; fails the test if tgtd does not come up.
start_tgtd() {
    local ns='' addr=127.0.0.1 mdir=$BSDIR extra=() attempt ctl port log pid
    while [ $# -gt 0 ]; do
        case $1 in
            --netns) ns=$2; shift 2 ;;
            --addr) addr=$2; shift 2 ;;
            --module-dir) mdir=$2; shift 2 ;;
            --no-module) mdir=$tmp/empty-bs; mkdir -p "$mdir"; shift ;;
            --) shift; extra=("$@"); break ;;
            *) fail "start_tgtd: unknown option $1" ;;
        esac
    done
    [ -d "$mdir" ] || fail "start_tgtd: module folder $mdir does not exist"
    mkdir -p /var/run/tgtd
    for attempt in 1 2 3; do
        ctl=$(pick_ctl_port) || fail "start_tgtd: no free control port"
        port=$(pick_port "$ns") || fail "start_tgtd: no free TCP port"
        log=$tmp/tgtd-$ctl.log
        local cmd="mount --bind \"\$0\" $TGT_BSDIR && exec tgtd -f -C $ctl --iscsi portal=$addr:$port \"\$@\""
        if [ -n "$ns" ]; then
            ip netns exec "$ns" unshare -m sh -c "$cmd" "$mdir" "${extra[@]}" </dev/null >"$log" 2>&1 &
        else
            unshare -m sh -c "$cmd" "$mdir" "${extra[@]}" </dev/null >"$log" 2>&1 &
        fi
        pid=$!
        # Up when tgtadm answers on its control port and the portal listens.
        local i up=0
        for (( i=0; i<150; i++ )); do
            if ! kill -0 "$pid" 2>/dev/null; then break; fi
            if tgtadm -C "$ctl" --mode sys --op show >/dev/null 2>&1 &&
               ! _port_is_free "$ns" "$port"; then
                up=1; break
            fi
            sleep 0.1
        done
        if [ "$up" = 1 ]; then
            tgtd_pid=$pid tgtd_ctl=$ctl tgtd_addr=$addr tgtd_port=$port
            tgtd_log=$log tgtd_netns=$ns
            cleanup_fn stop_tgtd "$ctl" "$pid" "$log"
            note "tgtd pid $pid control port $ctl portal $addr:$port${ns:+ netns $ns} log $log"
            return 0
        fi
        note "tgtd (attempt $attempt, control port $ctl, portal $addr:$port) did not come up:"
        sed 's/^/    /' "$log" >&2 || true
        _stop_pid "$pid"
    done
    fail "start_tgtd: tgtd did not start"
}

# Wait up to 10 s for PID to exit, then SIGKILL it; reap it if it is ours.
_stop_pid() {
    local pid=$1 i
    for (( i=0; i<100; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "process $pid did not exit; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for (( i=0; i<50; i++ )); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    wait "$pid" 2>/dev/null || true
}

# kill_quiet PID: stop a helper process the test started (if still there).
kill_quiet() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# tgt_targets [CTL]: list target ids of the tgtd on control port CTL.
tgt_targets() {
    local ctl=${1:-$tgtd_ctl}
    timeout 30 tgtadm -C "$ctl" --lld iscsi --mode target --op show 2>/dev/null |
        sed -n 's/^Target \([0-9]*\):.*/\1/p'
}

# stop_tgtd [CTL PID [LOG]]: delete every target (--force), then the system;
# wait for PID (bounded), SIGKILL as a last resort.  Defaults to the current.
stop_tgtd() {
    local ctl=${1:-$tgtd_ctl} pid=${2:-$tgtd_pid} log=${3:-} tid i ok
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; _forget_tgtd "$pid"; return 0; }
    timeout 10 tgtadm -C "$ctl" --mode sys --op update --name State -v offline >/dev/null 2>&1 || true
    for tid in $(tgt_targets "$ctl"); do
        # Refused with "LUN busy" while commands are in flight: retry briefly.
        ok=0
        for (( i=0; i<50; i++ )); do
            if timeout 30 tgtadm -C "$ctl" --lld iscsi --mode target --op delete --tid "$tid" --force >/dev/null 2>&1; then
                ok=1; break
            fi
            sleep 0.2
        done
        [ "$ok" = 1 ] || note "tgtd $pid: could not delete target $tid"
    done
    timeout 10 tgtadm -C "$ctl" --mode system --op delete >/dev/null 2>&1 || true
    _stop_pid "$pid"
    rm -f "/var/run/tgtd/socket.$ctl" "/var/run/tgtd/socket.$ctl.lock"
    _forget_tgtd "$pid"
    # Show the daemon's log when the test is failing.
    if [ -n "$log" ] && [ "${_test_failing:-0}" = 1 ] && [ -s "$log" ]; then
        note "tgtd log ($log), last lines:"
        tail -n 40 "$log" | sed 's/^/    /' >&2
    fi
}

# Drop the registered cleanup of a tgtd that was stopped explicitly.
_forget_tgtd() {
    local pid=$1 i
    for i in "${!_cleanup_fns[@]}"; do
        case ${_cleanup_fns[i]} in
            "stop_tgtd "*" $pid "*) unset '_cleanup_fns[i]' ;;
        esac
    done
    _cleanup_fns=("${_cleanup_fns[@]}")
}

# restart_tgtd: stop the current tgtd and start a new one with the same
# options (new ports; targets must be created again).
restart_tgtd() {
    stop_tgtd
    start_tgtd "$@"
}

# tgt_adm ARGS...: tgtadm on the current tgtd's control port.
tgt_adm() { timeout 60 tgtadm -C "$tgtd_ctl" "$@"; }

# tgt_iqn NAME: the IQN tests use for a target named NAME.
tgt_iqn() { echo "$IQN_PREFIX:$1"; }

declare -A _tgt_iqn=()
# tgt_target_new TID NAME: new iSCSI target TID (iqn $IQN_PREFIX:NAME) that
# accepts every initiator.
tgt_target_new() {
    local tid=$1 iqn
    iqn=$(tgt_iqn "$2")
    tgt_adm --lld iscsi --mode target --op new --tid "$tid" -T "$iqn" || return
    tgt_adm --lld iscsi --mode target --op bind --tid "$tid" -I ALL || return
    _tgt_iqn[$tgtd_ctl.$tid]=$iqn
}

# tgt_lun_new TID LUN BSTYPE BACKING [BSOPTS]: new LUN; prints tgtadm's
# message and returns its status on failure.
tgt_lun_new() {
    local tid=$1 lun=$2 bstype=$3 backing=$4 bsopts=${5:-}
    local args=(--lld iscsi --mode logicalunit --op new --tid "$tid" --lun "$lun"
                --bstype "$bstype" --backing-store "$backing")
    [ -n "$bsopts" ] && args+=(--bsopts "$bsopts")
    tgt_adm "${args[@]}"
}

# tgt_lun_delete TID LUN
tgt_lun_delete() {
    tgt_adm --lld iscsi --mode logicalunit --op delete --tid "$1" --lun "$2"
}

# iscsi_url TID LUN: iscsi://ADDR:PORT/IQN/LUN of the current tgtd.
iscsi_url() {
    local tid=$1 lun=$2 iqn=${_tgt_iqn[$tgtd_ctl.$1]:-}
    [ -n "$iqn" ] || fail "iscsi_url: no target $tid on tgtd $tgtd_ctl"
    echo "iscsi://$tgtd_addr:$tgtd_port/$iqn/$lun"
}

# ---- pools -----------------------------------------------------------------
# make_pool_conf NAME NDEVS DEVSIZE [EXTENT_SIZE]: write $tmp/NAME.yaml for a
# pool of NDEVS sparse files $tmp/NAME-dI.img of DEVSIZE each (the files are
# created by `vdlvm pool create`).  Prints the config path.
make_pool_conf() {
    local name=$1 n=$2 size=$3 ext=${4:-} i conf=$tmp/$1.yaml
    {
        echo "pool: $name"
        [ -n "$ext" ] && echo "extent_size: $ext"
        echo "devices:"
        for (( i=0; i<n; i++ )); do
            echo "  - name: d$i"
            echo "    path: $tmp/$name-d$i.img"
            echo "    size: $size"
        done
    } > "$conf"
    echo "$conf"
}

# vdlvm ARGS...: the built command, with a bounded run time.
vdlvm() { timeout 120 "$VDLVM" "$@"; }

# expect_fail EXIT_CODE PATTERN CMD...: CMD must exit with EXIT_CODE ("nz"
# for 1 or 2, vdlvm's failure codes) and print a message matching the extended regexp
# PATTERN on stderr.  The message is shown in the test log.
expect_fail() {
    local want=$1 pat=$2 rc=0 out
    shift 2
    out=$("$@" 2>&1 >/dev/null) || rc=$?
    local shown="$*"
    note "\$ ${shown//$tmp/\$tmp}: exit $rc: $out"
    if [ "$want" = nz ]; then
        [ "$rc" = 1 ] || [ "$rc" = 2 ] || fail "'$*' exited $rc; expected 1 or 2"
    else
        [ "$rc" = "$want" ] || fail "'$*' exited $rc; expected $want"
    fi
    [ -n "$out" ] || fail "'$*' printed no message"
    grep -Eq -- "$pat" <<<"$out" || fail "'$*': message does not match /$pat/: $out"
}

# ---- data ------------------------------------------------------------------
# random_file PATH SIZE_MIB: PATH filled with SIZE_MIB MiB of random bytes.
random_file() {
    head -c "$(( $2 * 1024 * 1024 ))" /dev/urandom > "$1"
}

# iscsi_write FILE URL: write FILE to the start of the LUN.
iscsi_write() {
    timeout 300 qemu-img convert -n -f raw -O raw "$1" "$2"
}

# iscsi_read URL FILE BYTES: read the first BYTES of the LUN into FILE.
iscsi_read() {
    local url=$1 out=$2 bytes=$3
    timeout 300 qemu-img convert -f raw -O raw "$url" "$out.full" || return
    truncate -s "$bytes" "$out.full" && mv "$out.full" "$out"
}

# iscsi_size URL: LUN size in bytes (READ CAPACITY 16).
iscsi_size() {
    timeout 30 iscsi-readcapacity16 -s "$1"
}

# ---- network namespaces (two emulated nodes) --------------------------------
# Section owned by the remote-devices tests (issue 3).
#
#   netns_setup_pair [ADDR_A ADDR_B]
#
# Creates two network namespaces, $netns_a and $netns_b (names unique to
# this test process), joined by a veth pair: $netns_a_if in $netns_a with
# ADDR_A (default 198.51.100.1/24) and $netns_b_if in $netns_b with ADDR_B
# (default 198.51.100.2/24); loopback is up in both.  Nothing is added to the
# machine's own namespace (the veth ends are created directly inside the
# namespaces).  Registers netns_cleanup, which deletes both namespaces;
# register it before starting daemons in them so that they are stopped
# first (cleanup runs last-registered first).
netns_setup_pair() {
    local addr_a=${1:-198.51.100.1/24} addr_b=${2:-198.51.100.2/24}
    requires_root
    requires command -v ip
    netns_a=vdlvm-a-$$ netns_b=vdlvm-b-$$
    netns_a_if=vetha netns_b_if=vethb
    netns_a_addr=${addr_a%/*} netns_b_addr=${addr_b%/*}
    ip netns add "$netns_a" || skip "cannot create network namespaces"
    cleanup_fn netns_cleanup "$netns_a"
    ip netns add "$netns_b" || fail "ip netns add $netns_b failed"
    cleanup_fn netns_cleanup "$netns_b"
    ip link add "$netns_a_if" netns "$netns_a" type veth \
        peer name "$netns_b_if" netns "$netns_b" ||
        fail "cannot create a veth pair between $netns_a and $netns_b"
    ip -n "$netns_a" addr add "$addr_a" dev "$netns_a_if" &&
    ip -n "$netns_b" addr add "$addr_b" dev "$netns_b_if" &&
    ip -n "$netns_a" link set lo up && ip -n "$netns_b" link set lo up &&
    ip -n "$netns_a" link set "$netns_a_if" up &&
    ip -n "$netns_b" link set "$netns_b_if" up ||
        fail "cannot configure the veth pair"
    wait_for 10 _netns_link_is_up || fail "the veth pair does not come up"
    note "network namespaces $netns_a ($netns_a_addr) and $netns_b ($netns_b_addr)"
}

_netns_link_is_up() {
    [ "$(ip netns exec "$netns_a" cat /sys/class/net/$netns_a_if/operstate)" = up ] &&
    [ "$(ip netns exec "$netns_b" cat /sys/class/net/$netns_b_if/operstate)" = up ]
}

# netns_cleanup NS: kill what still runs in NS (a test stops its own
# processes first; this is the last resort), then delete NS.
netns_cleanup() {
    local ns=$1 pids i
    ip netns list 2>/dev/null | grep -qw -- "$ns" || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null)
    if [ -n "$pids" ]; then
        note "netns $ns: processes still running: $pids; killing them"
        kill -KILL $pids 2>/dev/null || true
        for (( i=0; i<50; i++ )); do
            [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    ip netns delete "$ns" 2>/dev/null || note "ip netns delete $ns failed"
}

# netns_link_silent / netns_link_restore: node B stops answering node A
# (packets are dropped without any error), and undo it.  Uses
# `tc netem loss 100%` on B's end of the link where the kernel has netem;
# otherwise a blackhole route on B towards A (B's answers vanish).  Sets
# netns_silent_how to the method used.
netns_link_silent() {
    if ip netns exec "$netns_b" tc qdisc add dev "$netns_b_if" root netem loss 100% 2>/dev/null; then
        netns_silent_how="tc netem loss 100% on $netns_b_if"
    else
        ip -n "$netns_b" route add blackhole "$netns_a_addr/32" || return
        netns_silent_how="blackhole route to $netns_a_addr on node B (no netem in this kernel)"
    fi
}
netns_link_restore() {
    ip netns exec "$netns_b" tc qdisc del dev "$netns_b_if" root 2>/dev/null || true
    ip -n "$netns_b" route del blackhole "$netns_a_addr/32" 2>/dev/null || true
    ip -n "$netns_b" link set "$netns_b_if" up
    ip -n "$netns_a" link set "$netns_a_if" up
}
# netns_link_down: node B's end of the link goes down (a loud failure).
netns_link_down() {
    ip -n "$netns_b" link set "$netns_b_if" down
}
# ---- end of network namespaces ------------------------------------------------

# ---- libiscsi conformance (iscsi-test-cu) ---------------------------------------
# The one parser of iscsi-test-cu output, used by tests/conformance/run.sh and
# the integration conformance tests.
#
# cu_verdicts SUITE OUT RC TESTS: one line "TEST VERDICT" per test of
# ALL.SUITE listed in the file TESTS, from iscsi-test-cu's output OUT (the
# process exited with RC).  VERDICT = PASS, SKIP (passed with a [SKIPPED]
# message) or FAIL; a test with no verdict (the process crashed or timed
# out) is "FAIL (timeout)" or "FAIL (no result, exit RC)".
cu_verdicts() {
    local suite=$1 out=$2 rc=$3 tests=$4 res t
    res=$(awk -v suite="$suite" '
        function verdict(l) {
            if (l ~ /\[SKIPPED\]/) skip = 1
            # The verdict starts a line (or follows "..."); a teardown may
            # print more after it on the same line.
            if (cur != "" && l ~ /^(passed|FAILED)([ \t]|$)/) {
                v = (l ~ /^FAILED/) ? "FAIL" : (skip ? "SKIP" : "PASS")
                print "ALL." suite "." cur, v
                cur = ""
            }
        }
        { sub(/\r$/, ""); sub(/[ \t]+$/, "") }
        /^  Test: [^ ]+ \.\.\./ {
            cur = $2; skip = 0
            rest = $0; sub(/^  Test: [^ ]+ \.\.\./, "", rest)
            verdict(rest); next
        }
        { verdict($0) }
    ' "$out")
    [ -z "$res" ] || printf '%s\n' "$res"
    while read -r t; do
        grep -q "^$t " <<<"$res" ||
            echo "$t FAIL$([ "$rc" = 124 ] || [ "$rc" = 137 ] && echo " (timeout)" || echo " (no result, exit $rc)")"
    done < <(grep "^ALL\.$suite\." "$tests")
}

# cu_verdict_of RES TEST: the verdict of TEST in a file of cu_verdicts lines.
cu_verdict_of() { awk -v t="$2" '$1 == t { print $2; exit }' "$1"; }

# cu_count RES VERDICT...: how many tests of RES have one of the verdicts.
cu_count() {
    local res=$1
    shift
    awk -v vs=" $* " 'index(vs, " " $2 " ") { n++ } END { print n + 0 }' "$res"
}
# ---- end of libiscsi conformance -------------------------------------------------
