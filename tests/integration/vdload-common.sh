# Shared steps of test-vdload.sh and test-vdload-vdlvm.sh (sourced after
# tests/functions.sh; not a test by itself).
#
# vdload_roundtrip URL FILE...: on the LUN at URL whose data lives in FILE(s)
#   1. vdload write --verify for a few seconds (sequential pass + random),
#      then vdload verify: must exit 0 and find every block ok;
#   2. drop the iSCSI session, and freeze tgtd (SIGSTOP) longer than the
#      command timeout, in the middle of --continue-on-error runs: vdload
#      must reconnect and the verify must still pass;
#   3. behind the target's back damage chosen blocks in FILE (found with
#      `vdload locate`, so the store's layout does not matter): random bytes,
#      one flipped bit, another LBA's block, zeros, and an older copy of a
#      block; vdload verify must exit 3 and list exactly those LBAs as
#      corrupt / lost / stale.

VDLOAD=$BUILD/vdload
RANGE_BYTES=$(( 4 * 1024 * 1024 ))            # 8192 blocks of 512 bytes
# Byte offset of the tested range in the LUN (4 KiB aligned); a test may set
# it so the range straddles two devices of a pool.
RANGE_START=${RANGE_START:-0}

vdload() { timeout 120 "$VDLOAD" "$@"; }

# locate_lba LBA FILE...: "FILE OFFSET" of the newest stamp of LBA.
locate_lba() {
    local lba=$1 f out
    shift
    for f in "$@"; do
        if out=$("$VDLOAD" locate "$f" "$lba" 2>/dev/null); then
            echo "$f ${out#* }"
            return 0
        fi
    done
    fail "no stamp for LBA $lba in $*"
}

# put_block SRC FILE OFFSET: overwrite 512 bytes of FILE at OFFSET with SRC.
put_block() {
    dd if="$1" of="$2" bs=512 count=1 seek="$(( $3 / 512 ))" conv=notrunc,fsync status=none ||
        fail "dd to $2 failed"
}

# get_block FILE OFFSET DST
get_block() {
    dd if="$1" of="$3" bs=512 count=1 skip="$(( $2 / 512 ))" status=none ||
        fail "dd from $1 failed"
}

# verify_expect JOURNAL URL RC LINE...: vdload verify must exit RC and its
# problem lines (lost:/stale:/corrupt:) must be exactly LINE...
verify_expect() {
    local j=$1 url=$2 want_rc=$3 rc=0 out got want
    shift 3
    out=$(vdload verify --journal "$j" "$url") || rc=$?
    note "verify: exit $rc: $out"
    [ "$rc" = "$want_rc" ] || fail "vdload verify exited $rc, expected $want_rc"
    grep -q "^verify: $(( RANGE_BYTES / 512 )) blocks checked" <<<"$out" ||
        fail "verify did not check all $(( RANGE_BYTES / 512 )) blocks"
    got=$(grep -E '^(lost|stale|corrupt):' <<<"$out" || true)
    want=$(printf '%s\n' "$@" | sed '/^$/d')
    [ "$got" = "$want" ] || fail "verify reported '$got', expected '$want'"
}

vdload_roundtrip() {
    local url=$1 j=$tmp/journal.$RANDOM rc=0 out
    shift
    local files=("$@")

    # 1. clean run
    vdload write --verify "$j" --pattern seq --bs 4k --qd 16 --count $(( RANGE_BYTES / 4096 )) \
        --range $RANGE_START:$RANGE_BYTES --quiet "$url" >/dev/null || fail "sequential verify pass failed"
    out=$(vdload write --verify "$j" --pattern rand --bs 4k --qd 32 --time 2 --seed 7 \
        --range $RANGE_START:$RANGE_BYTES --json "$url") || fail "random verify run failed: $out"
    note "write: $out"
    out=$(vdload write --verify "$j" --pattern rand --bs 64k --qd 8 --time 1 \
        --range $RANGE_START:$RANGE_BYTES "$url") || fail "64k verify run failed: $out"
    verify_expect "$j" "$url" 0

    # 2. connection loss in the middle of a run
    local sid log=$tmp/vdload-cont.log pid i
    rm -f "$tmp/load.started"
    vdload write --verify "$j" --continue-on-error --io-timeout 5 --bs 4k --qd 32 --time 5 \
        --range $RANGE_START:$RANGE_BYTES --json --started "$tmp/load.started" "$url" >"$log" 2>&1 &
    pid=$!
    sid=
    for (( i=0; i<50; i++ )); do
        sid=$(tgt_adm --lld iscsi --mode target --op show 2>/dev/null |
              sed -n 's/^ *I_T nexus: \([0-9]*\).*/\1/p' | tail -n 1)
        [ -n "$sid" ] && break
        sleep 0.1
    done
    [ -n "$sid" ] || { kill "$pid"; wait "$pid"; fail "vdload's session did not show up"; }
    wait_started "$tmp/load.started" "$pid" ||
        { kill "$pid"; wait "$pid"; fail "vdload's load did not start: $(cat "$log")"; }
    tgt_adm --lld iscsi --mode conn --op delete --tid 1 --sid "$sid" --cid 0 ||
        { kill "$pid"; wait "$pid"; fail "could not drop session $sid"; }
    wait "$pid" || { cat "$log" >&2; fail "vdload --continue-on-error failed"; }
    note "after dropped session: $(tail -n 1 "$log")"
    grep -q '"reconnects":[1-9]' "$log" || fail "vdload did not reconnect: $(cat "$log")"
    verify_expect "$j" "$url" 0

    # 2b. target frozen (SIGSTOP) longer than the command timeout: commands
    # time out, become in doubt, vdload reconnects once tgtd runs again
    rm -f "$tmp/load.started"
    vdload write --verify "$j" --continue-on-error --io-timeout 2 --bs 4k --qd 32 --time 6 \
        --range $RANGE_START:$RANGE_BYTES --json --started "$tmp/load.started" "$url" >"$log" 2>&1 &
    pid=$!
    wait_started "$tmp/load.started" "$pid" ||
        { kill "$pid"; wait "$pid"; fail "vdload's load did not start: $(cat "$log")"; }
    kill -STOP "$tgtd_pid"
    sleep 4
    kill -CONT "$tgtd_pid"
    wait "$pid" || { cat "$log" >&2; fail "vdload --continue-on-error failed with a frozen target"; }
    note "after frozen target: $(tail -n 1 "$log")"
    grep -q '"timeouts":[1-9]' "$log" || fail "no command timed out: $(cat "$log")"
    grep -q '"reconnects":[1-9]' "$log" || fail "vdload did not reconnect: $(cat "$log")"
    verify_expect "$j" "$url" 0

    # 3. damage chosen blocks behind the target's back (LBAs relative to the
    # start of the range)
    local b=$(( RANGE_START / 512 ))
    local stale_lba=$(( b + 777 )) f off saved=$tmp/saved.blk blk=$tmp/blk
    read -r f off <<<"$(locate_lba $stale_lba "${files[@]}")"
    get_block "$f" "$off" "$saved"
    # write the 4 KiB unit holding the block twice more: saved is now older
    vdload write --verify "$j" --pattern seq --bs 4k --qd 1 --count 2 \
        --range $(( stale_lba / 8 * 4096 )):4096 --quiet "$url" >/dev/null ||
        fail "rewriting LBA $stale_lba failed"
    read -r f off <<<"$(locate_lba $stale_lba "${files[@]}")"
    put_block "$saved" "$f" "$off"

    local lba
    for lba in $(( b + 100 )) $(( b + 4000 )) $(( b + 4001 )); do   # random bytes
        read -r f off <<<"$(locate_lba $lba "${files[@]}")"
        head -c 512 /dev/urandom > "$blk"
        put_block "$blk" "$f" "$off"
    done
    read -r f off <<<"$(locate_lba $(( b + 7000 )) "${files[@]}")"  # one flipped bit
    get_block "$f" "$off" "$blk"
    # flip bit 0 of byte 300 (xor: writing a fixed byte changed nothing
    # when the byte already had that value, 1 run in 256)
    local byte
    byte=$(od -An -tu1 -j300 -N1 "$blk" | tr -d ' ')
    printf "\\x$(printf %02x $(( byte ^ 1 )))" |
        dd of="$blk" bs=1 seek=300 conv=notrunc status=none
    cmp -s "$blk" <(dd if="$f" bs=512 count=1 skip=$(( off / 512 )) status=none) &&
        fail "bit flip did not change the block"
    put_block "$blk" "$f" "$off"
    read -r f off <<<"$(locate_lba $(( b + 5000 )) "${files[@]}")"  # another LBA's block
    get_block "$f" "$off" "$blk"
    read -r f off <<<"$(locate_lba $(( b + 5001 )) "${files[@]}")"
    put_block "$blk" "$f" "$off"
    read -r f off <<<"$(locate_lba $(( b + 6000 )) "${files[@]}")"  # zeros
    put_block /dev/zero "$f" "$off"

    verify_expect "$j" "$url" 3 "lost: $(( b + 6000 ))" "stale: $(( b + 777 ))" \
        "corrupt: $(( b + 100 )) $(( b + 4000 ))-$(( b + 4001 )) $(( b + 5001 )) $(( b + 7000 ))"
}
