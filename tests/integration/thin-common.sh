# Shared set-up of the thin-volume tests (issue 10), sourced after
# tests/functions.sh; not a test by itself.
#
#   thin_requires                 what the thin tests need (skip otherwise)
#   thin_tool_build               builds $THIN_TOOL from thin-tool.c
#   thin_pool_conf NAME NDEVS DEVSIZE [CHUNK] [NODES]
#       make_pool_conf plus `chunk_size: CHUNK`; NODES (e.g. "nodea nodeb")
#       gives device i the node of word i (local files on distinct "nodes",
#       so that a mirror's legs may go on them).  Prints the config path.
#   thin_create_failed OUT        `vol create --thin` failed with OUT: skip
#                                 when the build has no thin layout, else fail
#   pool_field POOL KEY           a number of `status POOL --json` at the
#                                 pool level (before the device list)
#   vol_field POOL/VOL KEY        a number of `status POOL/VOL --json`

THIN_TOOL=$tmp/thin-tool
VDLOAD=$BUILD/vdload
MiB=$((1024 * 1024))
GiB=$((1024 * MiB))

thin_requires() {
    requires_tgtd
    requires_vdlvm
    requires qemu-img --version
    requires qemu-io --version
    requires sh -c 'qemu-img --help | grep -qw iscsi'
    requires command -v cc
    requires test -e /usr/include/iscsi/iscsi.h
}

thin_tool_build() {
    cc -std=gnu11 -D_GNU_SOURCE -Wall -o "$THIN_TOOL" \
        "$top_srcdir/tests/integration/thin-tool.c" -liscsi ||
        fail "cannot build thin-tool"
}

thin_pool_conf() {
    local name=$1 n=$2 size=$3 chunk=${4:-} nodes=(${5:-}) conf i
    conf=$(make_pool_conf "$name" "$n" "$size")
    if [ -n "$chunk" ]; then
        sed -i "1a chunk_size: $chunk" "$conf"
    fi
    if [ ${#nodes[@]} -gt 0 ]; then
        for (( i = 0; i < n; i++ )); do
            sed -i "/^    path: .*$name-d$i.img$/a\\    node: ${nodes[i]}" "$conf"
        done
    fi
    echo "$conf"
}

# The first "KEY":N of the JSON on stdin.
_json_num() { grep -o "\"$1\":[0-9.]*" | head -n 1 | cut -d: -f2; }

pool_field() { vdlvm status "$1" --json | sed 's/"devices":.*//' | _json_num "$2"; }
vol_field() { vdlvm status "$1" --json | _json_num "$2"; }

# qemu_io URL CMD: qemu-io on the LUN, output in $tmp/qio.out; fails on an
# error message.
qemu_io() {
    timeout 120 qemu-io -f raw -c "$2" "$1" > "$tmp/qio.out" 2>&1 || return
    ! grep -Eq "failed|error|Pattern verification" "$tmp/qio.out"
}

thin_create_failed() {
    grep -q "not supported by this build" <<<"$1" &&
        skip "this build has no thin layout: $1"
    fail "vol create --thin failed: $1"
}
