# Shared set-up of the remote-device tests of issue 8 (stale writes, pool
# ownership, degraded flush, latency), sourced after tests/functions.sh and
# tests/integration/mirror-common.sh; not a test by itself.
#
#   remote_tools_build        builds $tmp/remote-tool (remote-tool.c against
#     $BUILD/libvdlvm.a) and $tmp/delay-shim.so (delay-shim.c).
#   remote_peer_start X [SIZE] [--shim]   stock tgtd on node X (b or c)
#     exporting a rdwr LUN on $tmp/nodeX-disk.img (default 160M); with
#     --shim the daemon runs with the write-holding shim (VDLVM_SHIM_DIR
#     $tmp/shim-X, held byte $SHIM_BYTE).  Sets url_X, X_pid, X_ctl.
#   remote_link_bc            a third veth pair nodeb 192.0.2.1 -- nodec
#     192.0.2.2, and routes inside nodeb/nodec so that nodec reaches
#     nodeb's portal (checked when url_b is set); nothing in the machine's
#     own namespace.
#   in_b/in_c CMD             run in nodeb's / nodec's namespace.
#   as_host NAME NS CMD...    run CMD in namespace NS with host name NAME
#     (own UTS namespace: another host, as vdlvm sees it) and its own
#     VDLVM_RUNDIR ($tmp/run-NAME).

REMOTE_TOOL=$tmp/remote-tool
SHIM=$tmp/delay-shim.so
SHIM_BYTE=0x4f   # 'O': the old write of the stale-write test
IF_BC=vbc IF_CB=vcb ADDR_B_C=192.0.2.1 ADDR_C_B=192.0.2.2

remote_tools_build() {
    local src=$top_srcdir/tests/integration
    requires command -v cc
    cc -std=gnu11 -D_GNU_SOURCE -Wall -I"$top_srcdir" -o "$REMOTE_TOOL" \
        "$src/remote-tool.c" "$BUILD/libvdlvm.a" -liscsi -lrbd -lrados -lyaml -lcrypto -lblkid -luring -lpthread ||
        fail "cannot build remote-tool"
    cc -shared -fPIC -Wall -o "$SHIM" "$src/delay-shim.c" -ldl ||
        fail "cannot build the delay shim"
}

in_b() { ip netns exec "$NS_B" "$@"; }
in_c() { ip netns exec "$NS_C" "$@"; }

remote_peer_start() {
    local x=$1 size=${2:-160M} shim=${3:-} ns addr
    if [ "$x" = b ]; then ns=$NS_B addr=$ADDR_B; else ns=$NS_C addr=$ADDR_C; fi
    if [ "$shim" = --shim ]; then
        mkdir -p "$tmp/shim-$x"
        export LD_PRELOAD=$SHIM VDLVM_SHIM_DIR=$tmp/shim-$x VDLVM_SHIM_BYTE=$SHIM_BYTE
    fi
    start_tgtd --netns "$ns" --addr "$addr" --no-module
    unset LD_PRELOAD VDLVM_SHIM_DIR VDLVM_SHIM_BYTE
    eval "${x}_pid=\$tgtd_pid ${x}_ctl=\$tgtd_ctl"
    truncate -s "$size" "$tmp/node$x-disk.img"
    tgt_target_new 1 "node$x" || fail "node$x: cannot create target"
    tgt_lun_new 1 1 rdwr "$tmp/node$x-disk.img" || fail "node$x: cannot export its disk"
    eval "url_${x}=\$(iscsi_url 1 1)"
}

remote_link_bc() {
    _mirror_link "$NS_B" $IF_BC $ADDR_B_C "$NS_C" $IF_CB $ADDR_C_B
    # nodec reaches nodeb's portal address over the new link.
    ip -n "$NS_C" route add "$ADDR_B/32" via $ADDR_B_C ||
        fail "cannot route nodeb's portal from nodec"
    [ -n "${url_b:-}" ] || return 0
    local port=${url_b#iscsi://*:}
    port=${port%%/*}
    wait_for 10 in_c timeout 2 bash -c "exec 3<>/dev/tcp/$ADDR_B/$port" ||
        fail "nodec cannot reach nodeb's portal $ADDR_B:$port"
}

as_host() {
    local name=$1 ns=$2
    shift 2
    mkdir -p "$tmp/run-$name"
    ip netns exec "$ns" env VDLVM_RUNDIR="$tmp/run-$name" \
        unshare --uts sh -c 'hostname "$0" && exec "$@"' "$name" "$@"
}
