#!/bin/bash
# Usage: tools/demo.sh start | stop [--purge] | status
#
# start: a pool "demo" on three sparse 1 GiB files in /var/lib/vdlvm/demo
#        (definition /etc/vdlvm/demo.yaml), a 2 GiB volume demo/vol0 (larger
#        than any one file), and a tgtd (control port 7, portal
#        127.0.0.1:3261) exporting it with the installed bs_vdlvm.so.  Prints
#        the iscsi:// URL, the LUN's exact size and how to stop it.  Run by
#        `make demo` after `make install`.  Starting again reuses the pool.
# stop:  stops that tgtd (only it); --purge also removes the pool (vdlvm pool
#        remove --force --purge-definition) and deletes its files.
set -euo pipefail

# Tests run the demo in private folders and on free ports (the VDLVM_DEMO_*
# variables, and VDLVM_CONFDIR as for vdlvm itself).
DEMO_DIR=${VDLVM_DEMO_DIR:-/var/lib/vdlvm/demo}
CONF=${VDLVM_CONFDIR:-/etc/vdlvm}/demo.yaml
CTL=${VDLVM_DEMO_CTL:-7}
ADDR=127.0.0.1
PORT=${VDLVM_DEMO_PORT:-3261}
IQN=iqn.2024-01.org.vdlvm:demo
PIDFILE=${VDLVM_DEMO_PIDFILE:-/run/vdlvm-demo-tgtd.pid}
LOG=$DEMO_DIR/tgtd.log
URL=iscsi://$ADDR:$PORT/$IQN/1

say() { echo "demo: $*" >&2; }
die() { say "$*"; exit 1; }

tgtd_up() { timeout 10 tgtadm -C "$CTL" --mode sys --op show >/dev/null 2>&1; }

# PID of the demo tgtd: from the pid file, checked against its command line.
demo_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null |
        grep -q "tgtd -f -C $CTL " && echo "$pid"
    return 0
}

show() {
    echo
    echo "vdlvm demo is running: tgtd pid $(demo_pid), control port $CTL, log $LOG"
    echo
    echo "  volume demo/vol0 as an iSCSI LUN:  $URL"
    echo
    echo "\$ iscsi-readcapacity16 -s $URL      # the LUN's size in bytes"
    local bytes
    bytes=$(timeout 30 iscsi-readcapacity16 -s "$URL" 2>/dev/null || true)
    echo "${bytes:-?}${bytes:+ bytes = $(( bytes / 1024 / 1024 )) MiB}"
    echo
    echo "\$ vdlvm status demo"
    vdlvm status demo || true
    echo
    # A volume name and a LUN number not taken yet, so that the hint works
    # on every run.
    local n=1 lun=2
    while vdlvm vol list demo 2>/dev/null | grep -q "^demo/vol$n "; do n=$((n + 1)); done
    while timeout 10 tgtadm -C "$CTL" --lld iscsi --mode target --op show 2>/dev/null |
            grep -q "LUN: $lun\$"; do lun=$((lun + 1)); done
    # and a size that fits the pool's free space.
    local free mib
    free=$(vdlvm status demo --json 2>/dev/null | grep -o '"free":[0-9]*' | head -1 | cut -d: -f2)
    mib=$(( ${free:-0} / 1024 / 1024 / 4 * 4 ))
    [ "$mib" -le 512 ] || mib=512
    echo "Try:  qemu-img info $URL"
    if [ "$mib" -ge 4 ]; then
        echo "      vdlvm vol create demo/vol$n --size ${mib}MiB     # live, through tgtd"
    else
        echo "      vdlvm vol remove demo/vol$n    # the pool is full: free some space first"
    fi
    echo "      tgtadm -C $CTL --lld iscsi --mode logicalunit --op new --tid 1 --lun $lun \\"
    echo "             --bstype vdlvm --backing-store demo/vol$n --bsopts conf=$CONF"
    echo "Stop: make demo-stop   (or tools/demo.sh stop; add --purge to delete the pool)"
}

start() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    command -v vdlvm >/dev/null || die "vdlvm is not installed; run make demo (or make install)"
    [ -f /usr/lib/tgt/backing-store/bs_vdlvm.so ] ||
        die "/usr/lib/tgt/backing-store/bs_vdlvm.so is not installed; run make demo (or make install)"
    if tgtd_up; then
        [ -n "$(demo_pid)" ] || die "another tgtd already uses control port $CTL; stop it first"
        say "already running"
        show
        return 0
    fi

    mkdir -p "$DEMO_DIR" "$(dirname "$CONF")"
    if [ ! -f "$CONF" ]; then
        cat > "$CONF" <<EOF
# vdlvm demo pool (tools/demo.sh): three sparse files of 1 GiB.
pool: demo
extent_size: 4MiB
devices:
  - name: d0
    path: $DEMO_DIR/d0.img
    size: 1GiB
  - name: d1
    path: $DEMO_DIR/d1.img
    size: 1GiB
  - name: d2
    path: $DEMO_DIR/d2.img
    size: 1GiB
EOF
    fi
    if ! vdlvm -c "$CONF" status demo >/dev/null 2>&1; then
        vdlvm pool create "$CONF"
    fi
    if ! vdlvm -c "$CONF" vol list demo 2>/dev/null | grep -qw vol0; then
        vdlvm -c "$CONF" vol create demo/vol0 --size 2GiB
    fi

    mkdir -p /var/run/tgtd
    # Foreground tgtd in its own session, so it outlives this script; its
    # log goes to a file (tgtd ignores SIGTERM: stop with tools/demo.sh stop).
    setsid tgtd -f -C "$CTL" --iscsi portal="$ADDR:$PORT" </dev/null >"$LOG" 2>&1 &
    echo $! > "$PIDFILE"
    local i
    for (( i=0; i<100; i++ )); do
        tgtd_up && break
        kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
        sleep 0.1
    done
    tgtd_up || { tail -n 20 "$LOG" >&2; stop >/dev/null 2>&1 || true; die "tgtd did not start (log above)"; }
    tgtadm -C "$CTL" --lld iscsi --mode target --op new --tid 1 -T "$IQN"
    tgtadm -C "$CTL" --lld iscsi --mode target --op bind --tid 1 -I ALL
    if ! tgtadm -C "$CTL" --lld iscsi --mode logicalunit --op new --tid 1 --lun 1 \
            --bstype vdlvm --backing-store demo/vol0 --bsopts "conf=$CONF"; then
        tail -n 20 "$LOG" >&2
        stop >/dev/null 2>&1 || true
        die "tgtd could not export demo/vol0 (log above)"
    fi
    show
}

stop() {
    local pid tid i
    pid=$(demo_pid)
    if [ -z "$pid" ]; then
        say "not running"
    else
        timeout 10 tgtadm -C "$CTL" --mode sys --op update --name State -v offline >/dev/null 2>&1 || true
        for tid in $(timeout 10 tgtadm -C "$CTL" --lld iscsi --mode target --op show 2>/dev/null |
                     sed -n 's/^Target \([0-9]*\):.*/\1/p'); do
            for (( i=0; i<25; i++ )); do
                timeout 30 tgtadm -C "$CTL" --lld iscsi --mode target --op delete --tid "$tid" --force \
                    >/dev/null 2>&1 && break
                sleep 0.2
            done
        done
        timeout 10 tgtadm -C "$CTL" --mode system --op delete >/dev/null 2>&1 || true
        for (( i=0; i<100; i++ )); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "tgtd $pid did not exit; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "/var/run/tgtd/socket.$CTL" "/var/run/tgtd/socket.$CTL.lock"
        say "stopped tgtd $pid"
    fi
    rm -f "$PIDFILE"
    if [ "${1:-}" = --purge ]; then
        # The background close of the pool in the stopped tgtd is over once
        # it has exited; remove the pool so that nothing remembers it.
        if [ -f "$CONF" ]; then
            vdlvm -c "$CONF" pool remove demo --force --purge-definition >&2 ||
                say "vdlvm pool remove demo failed; deleting the files anyway"
        fi
        rm -rf "$DEMO_DIR" "$CONF"
        say "deleted $DEMO_DIR and $CONF"
    else
        say "pool files kept in $DEMO_DIR ($CONF); 'tools/demo.sh stop --purge' deletes them"
    fi
}

case ${1:-} in
    start) start ;;
    stop) shift; stop "$@" ;;
    status) if [ -n "$(demo_pid)" ]; then show; else say "not running"; exit 1; fi ;;
    *) echo "usage: $0 start | stop [--purge] | status" >&2; exit 2 ;;
esac
