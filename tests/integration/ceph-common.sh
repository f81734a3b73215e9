# A one-node Ceph test cluster for the RBD tests (sourced after functions.sh).
#
#   source "$(dirname "$0")/ceph-common.sh"
#   ceph_requires                  # skip (77) unless the Ceph packages are here
#   ceph_start                     # mon + mgr + one memstore OSD on 127.0.0.1
#   ceph_cmd rbd create --size 64M rbd/img1
#   ceph_osd_stop / ceph_osd_start # the OSD goes away / comes back
#   ceph_mon_kill / ceph_mon_start # the monitor is killed (SIGKILL) /
#                                  # comes back on the same address and data
#
# Installs nothing: tools/install-deps.sh installs ceph-mon, ceph-osd,
# ceph-mgr, ceph-common and librbd-dev.  Everything lives in $tmp/ceph:
# ceph.conf ($CEPH_CONF), the keyring (client.admin, $CEPH_KEYRING), each
# daemon's data, log, pid file and admin socket (one per daemon: a shared
# one would collide with the librbd clients inside tgtd).  Addresses are on
# 127.0.0.1, ports picked free by the test (the monitor's, and a range for
# the other daemons: ms bind port min/max).  The OSD keeps its data in
# memory (memstore, 2 GiB at most): fill what a test reads.  Every daemon
# runs in the foreground as a child of the test and is stopped by PID from
# the EXIT trap (cleanup_fn); every wait is bounded.  "Ready" is when
# `rbd create` succeeds (HEALTH_OK can come before that).
#
# Sets CEPH_DIR, CEPH_CONF, CEPH_KEYRING, CEPH_FSID, ceph_mon_pid,
# ceph_mgr_pid, ceph_osd_pid.

ceph_requires() {
    local c
    for c in ceph-mon ceph-osd ceph-mgr ceph ceph-authtool monmaptool rbd; do
        command -v "$c" >/dev/null 2>&1 ||
            skip "test needs the Ceph packages ($c not found): run tools/install-deps.sh (ceph-mon ceph-osd ceph-mgr ceph-common)"
    done
}

# ceph_cmd CMD [ARGS...]: a Ceph client command against the test cluster,
# bounded (a dead cluster must not stall the test).
ceph_cmd() {
    local c=$1
    shift
    timeout 30 "$c" -c "$CEPH_CONF" --id admin "$@"
}

# The first of N consecutive free TCP ports on 127.0.0.1 (from a random base).
_ceph_port_range() {
    local n=$1 base p ok try
    for (( try=0; try<50; try++ )); do
        base=$(( 20000 + RANDOM % 30000 ))
        ok=1
        for (( p=base; p<base+n; p++ )); do
            _port_is_free "" "$p" || { ok=0; break; }
        done
        [ "$ok" = 1 ] && { echo "$base"; return 0; }
    done
    return 1
}

_ceph_stop_daemon() {
    local name=$1 pid=$2
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    _stop_pid "$pid"
}

# Start the OSD (again): its memstore data was saved by a clean stop.
ceph_osd_start() {
    ceph-osd -f -c "$CEPH_CONF" -i 0 </dev/null >>"$CEPH_DIR/log/osd.0.out" 2>&1 &
    ceph_osd_pid=$!
    cleanup_fn _ceph_stop_daemon osd.0 "$ceph_osd_pid"
}

# Stop the OSD cleanly (memstore saves its data), wait for its exit.
ceph_osd_stop() {
    _ceph_stop_daemon osd.0 "$ceph_osd_pid"
    ceph_osd_pid=
}

# Kill the monitor (SIGKILL: no goodbye to its clients), wait for its exit.
ceph_mon_kill() {
    [ -n "$ceph_mon_pid" ] || return 0
    kill -KILL "$ceph_mon_pid" 2>/dev/null || true
    _stop_pid "$ceph_mon_pid"
    ceph_mon_pid=
}

# Start the monitor (again) on its data and address; wait until it answers.
ceph_mon_start() {
    ceph-mon -f -c "$CEPH_CONF" -i a </dev/null >>"$CEPH_DIR/log/mon.a.out" 2>&1 &
    ceph_mon_pid=$!
    cleanup_fn _ceph_stop_daemon mon.a "$ceph_mon_pid"
    wait_for 30 ceph_cmd ceph mon stat >/dev/null ||
        fail "ceph: the monitor did not answer within 30 s of its restart"
}

ceph_start() {
    local port base uuid i
    CEPH_DIR=$tmp/ceph
    CEPH_CONF=$CEPH_DIR/ceph.conf
    CEPH_KEYRING=$CEPH_DIR/keyring
    CEPH_FSID=$(cat /proc/sys/kernel/random/uuid)
    mkdir -p "$CEPH_DIR"/{run,log,mon.a,mgr.x,osd.0}
    base=$(_ceph_port_range 40) || fail "ceph: no free port range"
    port=$base
    cat >"$CEPH_CONF" <<EOF
[global]
fsid = $CEPH_FSID
mon host = v2:127.0.0.1:$port
mon initial members = a
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind port min = $((base + 1))
ms bind port max = $((base + 39))
keyring = $CEPH_KEYRING
run dir = $CEPH_DIR/run
log file = $CEPH_DIR/log/\$name.log
pid file = $CEPH_DIR/run/\$name.pid
admin socket =
crash dir = $CEPH_DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
paxos propose interval = 0.1
auth allow insecure global id reclaim = false
[mon]
mon data = $CEPH_DIR/mon.\$id
admin socket = $CEPH_DIR/run/\$name.asok
[mgr]
mgr data = $CEPH_DIR/mgr.\$id
keyring = $CEPH_DIR/mgr.\$id/keyring
admin socket = $CEPH_DIR/run/\$name.asok
[osd]
osd data = $CEPH_DIR/osd.\$id
keyring = $CEPH_DIR/osd.\$id/keyring
osd objectstore = memstore
memstore device bytes = 2147483648
memstore page set = true
osd fast shutdown = false
admin socket = $CEPH_DIR/run/\$name.asok
EOF
    ceph-authtool --create-keyring "$CEPH_KEYRING" --gen-key -n mon. \
        --cap mon 'allow *' >/dev/null || fail "ceph: ceph-authtool failed"
    ceph-authtool "$CEPH_KEYRING" --gen-key -n client.admin --cap mon 'allow *' \
        --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null ||
        fail "ceph: ceph-authtool failed"
    chmod 600 "$CEPH_KEYRING"
    monmaptool --create --fsid "$CEPH_FSID" --addv a "[v2:127.0.0.1:$port]" \
        "$CEPH_DIR/monmap" >/dev/null || fail "ceph: monmaptool failed"
    ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" \
        --keyring "$CEPH_KEYRING" >"$CEPH_DIR/log/mkfs.out" 2>&1 ||
        fail "ceph: ceph-mon --mkfs failed: $(cat "$CEPH_DIR/log/mkfs.out")"
    ceph_mon_start

    ceph_cmd ceph auth get-or-create mgr.x mon 'allow profile mgr' \
        osd 'allow *' mds 'allow *' -o "$CEPH_DIR/mgr.x/keyring" ||
        fail "ceph: mgr key"
    ceph-mgr -f -c "$CEPH_CONF" -i x </dev/null >"$CEPH_DIR/log/mgr.x.out" 2>&1 &
    ceph_mgr_pid=$!
    cleanup_fn _ceph_stop_daemon mgr.x "$ceph_mgr_pid"

    uuid=$(cat /proc/sys/kernel/random/uuid)
    i=$(ceph_cmd ceph osd new "$uuid") || fail "ceph: osd new failed"
    [ "$i" = 0 ] || fail "ceph: osd new gave id '$i', expected 0"
    ceph_cmd ceph auth get-or-create osd.0 mon 'allow profile osd' \
        mgr 'allow profile osd' osd 'allow *' -o "$CEPH_DIR/osd.0/keyring" ||
        fail "ceph: osd key"
    ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$uuid" \
        >"$CEPH_DIR/log/osd-mkfs.out" 2>&1 ||
        fail "ceph: ceph-osd --mkfs failed: $(tail -5 "$CEPH_DIR/log/osd-mkfs.out")"
    ceph_osd_start

    ceph_cmd ceph osd pool create rbd 8 8 >/dev/null 2>&1 ||
        fail "ceph: pool create failed"
    ceph_cmd ceph osd pool application enable rbd rbd >/dev/null 2>&1 || true
    wait_for 60 ceph_cmd rbd create --size 1M --image-feature layering rbd/ready ||
        fail "ceph: the cluster was not ready within 60 s (logs in $CEPH_DIR/log)"
    note "ceph cluster $CEPH_FSID up (mon 127.0.0.1:$port, pids mon $ceph_mon_pid mgr $ceph_mgr_pid osd $ceph_osd_pid)"
}

# ceph_image NAME SIZE: a new image (layering only: no exclusive lock, so
# that a client that lost its watch while the OSD was away writes again
# at once).
ceph_image() {
    ceph_cmd rbd create --size "$2" --image-feature layering "rbd/$1" ||
        fail "ceph: rbd create rbd/$1 failed"
}
