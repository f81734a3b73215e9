# Shared set-up of the mirror tests (issue 4), sourced after tests/functions.sh;
# not a test by itself.
#
#   mirror_nodes_setup            three nodes in network namespaces:
#       nodea  198.51.100.1 (if $IF_AB) -- nodeb 198.51.100.2 (if $IF_BA)
#       nodea  203.0.113.1  (if $IF_AC) -- nodec 203.0.113.2  (if $IF_CA)
#     nothing in the machine's own namespace.
#   mirror_peers_start [SIZE]     stock tgtd on nodeb and nodec, each exporting
#     a rdwr LUN on a file ($tmp/nodeb-disk.img, $tmp/nodec-disk.img; SIZE
#     default 160M); sets url_b, url_c, b_pid/b_ctl, c_pid/c_ctl.
#   mirror_pool_create NAME [TIMEOUT]   pool NAME: a0 (16 MiB local file on
#     nodea, metadata only: too small for a leg), b0 (url_b, node nodeb),
#     c0 (url_c, node nodec); the remote devices' per-command limit TIMEOUT
#     (default 3000ms).  Sets conf.
#   mirror_vol_create POOL/VOL SIZE [ARGS]   2-leg mirror, one leg per node.
#   mirror_tgtd_start POOL/VOL    tgtd with the module on nodea exporting the
#     volume as target 1 LUN 1; sets a_pid, a_ctl, url_a.
#   mirror_tgtd_kill              kill -9 of nodea's tgtd (then start again).
#   mirror_field KEY              a numeric/string field of status --json.
#   node_silent/node_restore/node_down X   (X = b or c) faults on X's link.

MiB=$((1024 * 1024))
IF_AB=vab IF_BA=vba IF_AC=vac IF_CA=vca
ADDR_A_B=198.51.100.1 ADDR_B=198.51.100.2
ADDR_A_C=203.0.113.1 ADDR_C=203.0.113.2
VDLOAD=$BUILD/vdload

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

mirror_requires() {
    requires_tgtd
    requires_vdlvm
    requires command -v ip
    requires command -v tc
    requires qemu-img --version
    requires_file "$VDLOAD"
}

_mirror_link() { # NS_A IF_A ADDR_A NS_X IF_X ADDR_X
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4" ||
        fail "cannot create a veth pair between $1 and $4"
    ip -n "$1" addr add "$3/24" dev "$2" &&
    ip -n "$4" addr add "$6/24" dev "$5" &&
    ip -n "$1" link set "$2" up && ip -n "$4" link set "$5" up ||
        fail "cannot configure the veth pair $2-$5"
}

_mirror_links_up() {
    local ns_if
    for ns_if in "$NS_A $IF_AB" "$NS_B $IF_BA" "$NS_A $IF_AC" "$NS_C $IF_CA"; do
        set -- $ns_if
        [ "$(ip netns exec "$1" cat "/sys/class/net/$2/operstate")" = up ] || return 1
    done
}

mirror_nodes_setup() {
    NS_A=vdlvm-ma-$$ NS_B=vdlvm-mb-$$ NS_C=vdlvm-mc-$$
    local ns
    ip netns add "$NS_A" || skip "cannot create network namespaces"
    cleanup_fn netns_cleanup "$NS_A"
    for ns in "$NS_B" "$NS_C"; do
        ip netns add "$ns" || fail "ip netns add $ns failed"
        cleanup_fn netns_cleanup "$ns"
    done
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        ip -n "$ns" link set lo up || fail "cannot bring up lo in $ns"
    done
    _mirror_link "$NS_A" $IF_AB $ADDR_A_B "$NS_B" $IF_BA $ADDR_B
    _mirror_link "$NS_A" $IF_AC $ADDR_A_C "$NS_C" $IF_CA $ADDR_C
    wait_for 10 _mirror_links_up || fail "the veth pairs do not come up"
    note "nodes: nodea $NS_A, nodeb $NS_B ($ADDR_B), nodec $NS_C ($ADDR_C)"
}

in_a() { ip netns exec "$NS_A" "$@"; }
vdlvm_a() { in_a timeout 120 "$VDLVM" "$@"; }
vdload_a() { in_a timeout 300 "$VDLOAD" "$@"; }

mirror_peers_start() {
    local size=${1:-160M}
    start_tgtd --netns "$NS_B" --addr "$ADDR_B" --no-module
    b_pid=$tgtd_pid b_ctl=$tgtd_ctl
    truncate -s "$size" "$tmp/nodeb-disk.img"
    tgt_target_new 1 nodeb || fail "nodeb: cannot create target"
    tgt_lun_new 1 1 rdwr "$tmp/nodeb-disk.img" || fail "nodeb: cannot export its disk"
    url_b=$(iscsi_url 1 1)
    start_tgtd --netns "$NS_C" --addr "$ADDR_C" --no-module
    c_pid=$tgtd_pid c_ctl=$tgtd_ctl
    truncate -s "$size" "$tmp/nodec-disk.img"
    tgt_target_new 1 nodec || fail "nodec: cannot create target"
    tgt_lun_new 1 1 rdwr "$tmp/nodec-disk.img" || fail "nodec: cannot export its disk"
    url_c=$(iscsi_url 1 1)
}

mirror_pool_create() {
    local name=$1 to=${2:-3000ms}
    conf=$tmp/$name.yaml
    cat > "$conf" <<EOF
pool: $name
extent_size: 4MiB
devices:
  - name: a0
    path: $tmp/nodea-md.img
    size: 16MiB
    node: nodea
  - name: b0
    iscsi: $url_b
    node: nodeb
    timeout: $to
  - name: c0
    iscsi: $url_c
    node: nodec
    timeout: $to
EOF
    vdlvm_a pool create "$conf" || fail "pool create failed"
}

# mirror_vol_create POOL/VOL SIZE [EXTRA ARGS]
mirror_vol_create() {
    local pv=$1 size=$2
    shift 2
    vdlvm_a vol create "$pv" --size "$size" --layout mirror --copies 2 "$@" ||
        fail "mirror vol create failed"
    local legs
    legs=$(mirror_legs "$pv")
    [ "$legs" = "b0:nodeb c0:nodec" ] || [ "$legs" = "c0:nodec b0:nodeb" ] ||
        fail "the legs of $pv should be on b0 (nodeb) and c0 (nodec): $legs"
}

# mirror_status POOL/VOL: status --json (empty on failure)
# (its messages in $tmp/status.err)
mirror_status() { vdlvm_a status "$1" --json 2>"$tmp/status.err" || true; }
# mirror_legs POOL/VOL: "device:node ..." in leg order
mirror_legs() {
    mirror_status "$1" | grep -o '"legs":\[[^]]*\]' |
        grep -o '"device":"[^"]*","node":"[^"]*"' |
        sed 's/"device":"\([^"]*\)","node":"\([^"]*\)"/\1:\2/' | tr '\n' ' ' | sed 's/ $//' || true
}
# leg_state POOL/VOL DEVICE
leg_state() {
    mirror_status "$1" | grep -o '{"leg":[0-9]*,"device":"'"$2"'"[^}]*}' |
        sed -n 's/.*"state":"\([^"]*\)".*/\1/p' || true
}
# resync_field POOL/VOL KEY: a field of the "resync" object
resync_field() {
    mirror_status "$1" | grep -o '"resync":{[^}]*}' |
        sed -n 's/.*"'"$2"'":"\{0,1\}\([^",}]*\)"\{0,1\}.*/\1/p' || true
}
# mirror_in_sync POOL/VOL: every leg in-sync, resync idle, no dirty region
# needed (dirty bits may stay set until the cleaner passes).
mirror_in_sync() {
    local s
    s=$(mirror_status "$1")
    [ -n "$s" ] || return 1
    ! grep -q '"state":"\(stale\|failed\|resyncing\)"' <<<"$s" &&
        grep -q '"resync":{"state":"idle"' <<<"$s"
}

mirror_tgtd_start() {
    local pv=$1
    start_tgtd --netns "$NS_A" --addr "$ADDR_A_B"
    a_pid=$tgtd_pid a_ctl=$tgtd_ctl
    tgt_target_new 1 mirror || fail "nodea: cannot create target"
    tgt_lun_new 1 1 vdlvm "$pv" "conf=$conf" || fail "nodea: cannot export $pv"
    url_a=$(iscsi_url 1 1)
}

# kill -9 of nodea's tgtd; forget its cleanup (nothing left to stop).
mirror_tgtd_kill() {
    kill -KILL "$a_pid" 2>/dev/null || true
    wait "$a_pid" 2>/dev/null || true
    rm -f "/var/run/tgtd/socket.$a_ctl" "/var/run/tgtd/socket.$a_ctl.lock"
    _forget_tgtd "$a_pid"
}

# tx bytes of nodea's interface towards node X (b or c)
tx_bytes() {
    local ifn
    [ "$1" = b ] && ifn=$IF_AB || ifn=$IF_AC
    in_a cat "/sys/class/net/$ifn/statistics/tx_bytes"
}

_node_ns_if() { if [ "$1" = b ]; then echo "$NS_B $IF_BA"; else echo "$NS_C $IF_CA"; fi; }
# node X goes silent: its end drops every packet (tc netem loss 100%), or,
# where the kernel has no netem, X's answers to nodea vanish (blackhole
# route on X).  Sets silent_how.
node_silent() {
    local ns ifn addr
    read -r ns ifn <<<"$(_node_ns_if "$1")"
    [ "$1" = b ] && addr=$ADDR_A_B || addr=$ADDR_A_C
    if ip netns exec "$ns" tc qdisc add dev "$ifn" root netem loss 100% 2>/dev/null; then
        silent_how="tc netem loss 100% on node $1"
    else
        ip -n "$ns" route add blackhole "$addr/32" || return
        silent_how="blackhole route to nodea on node $1 (no netem in this kernel)"
    fi
}
# node X's link goes down
node_down() {
    local ns ifn
    read -r ns ifn <<<"$(_node_ns_if "$1")"
    ip -n "$ns" link set "$ifn" down
}
node_restore() {
    local ns ifn
    read -r ns ifn <<<"$(_node_ns_if "$1")"
    ip netns exec "$ns" tc qdisc del dev "$ifn" root 2>/dev/null || true
    ip -n "$ns" route del blackhole "$ADDR_A_B/32" 2>/dev/null || true
    ip -n "$ns" route del blackhole "$ADDR_A_C/32" 2>/dev/null || true
    ip -n "$ns" link set "$ifn" up
    wait_for 10 _mirror_links_up || fail "the link of node $1 does not come back up"
}

# wait_resync_done POOL/VOL SECONDS: poll until in sync; fails the test.
wait_in_sync() {
    local pv=$1 secs=$2
    wait_for "$secs" mirror_in_sync "$pv" ||
        fail "$pv not in sync after ${secs}s: $(mirror_status "$pv")"
}

# vdload_ok JSON_FILE: the run reported no failed command
vdload_errors() {
    sed -n 's/.*"errors":\([0-9]*\),"timeouts":\([0-9]*\),"cancelled":\([0-9]*\),"in_doubt":\([0-9]*\).*/errors \1 timeouts \2 cancelled \3 in_doubt \4/p' "$1"
}
