#!/bin/bash
# Usage: tests/conformance/run.sh BUILD [SUITE...]
#
# libiscsi's conformance suite (iscsi-test-cu, family ALL) against, in one
# tgtd started with the freshly built module:
#   rdwr        tgt's own rdwr store on a plain 128 MiB file (the reference)
#   vdlvm       a vdlvm volume of 160 MiB on a pool of three 64 MiB sparse
#               files (larger than any two devices, so it spans all three)
#   rdwr-thin   tgt's rdwr on another 128 MiB file with thin_provisioning=1
#               (the reference for thin LUNs: punches holes)
#   vdlvm-thin  a thin vdlvm volume of 128 MiB (chunks of 64 KiB) on a pool
#               of two 96 MiB sparse files
#   vdlvm-clone a clone (vol clone) of a snapshot of a 128 MiB image imported
#               with 16 MiB of data, on a pool like vdlvm-thin's (issue 11)
# One iscsi-test-cu process per suite and store (a CompareAndWrite test
# leaves a CDB hook behind that breaks later tests of the same process), each
# under CONF_SUITE_TIMEOUT seconds (default 300).
#
# Passes when
#   1. no test fails on vdlvm that does not fail on rdwr, and none fails on
#      vdlvm-thin or vdlvm-clone that does not fail on rdwr-thin or passes
#      on rdwr,
#   2. vdlvm and vdlvm-thin each pass at least CONF_MIN_PASS tests (default
#      223; CUnit counts a test that skips itself as passed, as in the
#      issue's numbers),
#   3. CompareAndWrite.Simple and .Miscompare run and pass on vdlvm and
#      vdlvm-thin (rdwr skips them: tgt's core answers COMPARE AND WRITE as
#      an illegal opcode),
#   4. vdlvm-thin skips fewer tests than rdwr-thin.
# Prints the tests whose results differ between the stores.
#
# Environment: CONF_STORES="rdwr vdlvm rdwr-thin vdlvm-thin vdlvm-clone" (a subset runs
# only those stores and checks only what applies; the closing line is about
# the last store named), CONF_SUITE_TIMEOUT, CONF_MIN_PASS,
# CONF_RESULTS=DIR (keep the raw outputs and results there).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 BUILD [SUITE...]" >&2; exit 2; }
BUILD=$1
shift
export BUILD
source "$(dirname "$0")/../functions.sh"

stores=${CONF_STORES:-rdwr rdwr-thin vdlvm-thin vdlvm vdlvm-clone}
suite_timeout=${CONF_SUITE_TIMEOUT:-300}
min_pass=${CONF_MIN_PASS:-223}
has_store() { [[ " $stores " == *" $1 "* ]]; }

requires_tgtd
requires iscsi-test-cu -l
{ has_store vdlvm || has_store vdlvm-thin || has_store vdlvm-clone; } && requires_vdlvm

results=${CONF_RESULTS:-$tmp/results}
mkdir -p "$results"

# ---- the test list ----------------------------------------------------------
iscsi-test-cu -l > "$results/list.txt" 2>&1 || true
grep -E '^ALL\.[^.]+\.[^.]+$' "$results/list.txt" > "$results/tests.txt" || true
if [ $# -gt 0 ]; then
    suites=("$@")
    grep -E "^ALL\.($(IFS='|'; echo "$*"))\." "$results/tests.txt" > "$results/tests.sel" || true
    mv "$results/tests.sel" "$results/tests.txt"
else
    mapfile -t suites < <(grep -E '^ALL\.[^.]+$' "$results/list.txt" | sed 's/^ALL\.//')
fi
ntests=$(wc -l < "$results/tests.txt")
[ "$ntests" -gt 0 ] || fail "iscsi-test-cu -l lists no tests of family ALL"
note "${#suites[@]} suites, $ntests tests, stores: $stores"

# ---- targets ------------------------------------------------------------------
if has_store vdlvm || has_store vdlvm-thin || has_store vdlvm-clone; then start_tgtd; else start_tgtd --no-module; fi
declare -A url=()
tid=0
if has_store rdwr; then
    tid=$((tid + 1))
    truncate -s 128M "$tmp/plain.img"
    tgt_target_new "$tid" rdwr
    tgt_lun_new "$tid" 1 rdwr "$tmp/plain.img" || fail "cannot export the rdwr LUN"
    url[rdwr]=$(iscsi_url "$tid" 1)
fi
if has_store vdlvm; then
    tid=$((tid + 1))
    conf=$(make_pool_conf pool0 3 64MiB 4MiB)
    vdlvm -c "$conf" pool create "$conf" || fail "vdlvm pool create failed"
    vdlvm -c "$conf" vol create pool0/vol0 --size 160MiB || fail "vdlvm vol create failed"
    vdlvm -c "$conf" status pool0/vol0 > "$results/vdlvm-status.txt" 2>&1 || true
    for i in 0 1 2; do
        grep -q "d$i" "$results/vdlvm-status.txt" ||
            fail "volume pool0/vol0 does not use device d$i: $(cat "$results/vdlvm-status.txt")"
    done
    tgt_target_new "$tid" vdlvm
    tgt_lun_new "$tid" 1 vdlvm pool0/vol0 "conf=$conf" ||
        fail "cannot export pool0/vol0 with the vdlvm module"
    url[vdlvm]=$(iscsi_url "$tid" 1)
fi

if has_store rdwr-thin; then
    tid=$((tid + 1))
    truncate -s 128M "$tmp/plain-thin.img"
    tgt_target_new "$tid" rdwr-thin
    tgt_lun_new "$tid" 1 rdwr "$tmp/plain-thin.img" || fail "cannot export the rdwr-thin LUN"
    tgt_adm --lld iscsi --mode logicalunit --op update --tid "$tid" --lun 1 \
        --params thin_provisioning=1 || fail "cannot make the rdwr-thin LUN thin"
    url[rdwr-thin]=$(iscsi_url "$tid" 1)
fi
if has_store vdlvm-thin; then
    tid=$((tid + 1))
    tconf=$(make_pool_conf pthin 2 96MiB 4MiB)
    vdlvm -c "$tconf" pool create "$tconf" || fail "vdlvm pool create pthin failed"
    if out=$(vdlvm -c "$tconf" vol create pthin/thin --size 128MiB --thin 2>&1); then
        tgt_target_new "$tid" vdlvm-thin
        tgt_lun_new "$tid" 1 vdlvm pthin/thin "conf=$tconf" ||
            fail "cannot export pthin/thin with the vdlvm module"
        url[vdlvm-thin]=$(iscsi_url "$tid" 1)
    elif grep -q "not supported by this build" <<<"$out"; then
        note "vdlvm-thin not run: this build has no thin layout ($out)"
        stores=$(sed 's/ *vdlvm-thin//' <<<"$stores")
    else
        fail "vdlvm vol create --thin failed: $out"
    fi
fi
if has_store vdlvm-clone; then
    # a clone (issue 11) of a snapshot of an imported 128 MiB image whose
    # first 16 MiB hold data: the tests' writes copy shared chunks, their
    # reads see the image's data or zeroes
    tid=$((tid + 1))
    cconf=$(make_pool_conf pclone 2 96MiB 4MiB)
    vdlvm -c "$cconf" pool create "$cconf" || fail "vdlvm pool create pclone failed"
    head -c $((16 * 1024 * 1024)) /dev/urandom > "$tmp/clone-img.raw"
    truncate -s 128M "$tmp/clone-img.raw"
    if out=$(vdlvm -c "$cconf" vol import pclone/img "$tmp/clone-img.raw" 2>&1) &&
        out=$(vdlvm -c "$cconf" snap create pclone/img@base 2>&1) &&
        out=$(vdlvm -c "$cconf" vol clone pclone/img@base pclone/clone 2>&1); then
        tgt_target_new "$tid" vdlvm-clone
        tgt_lun_new "$tid" 1 vdlvm pclone/clone "conf=$cconf" ||
            fail "cannot export the clone pclone/clone with the vdlvm module"
        url[vdlvm-clone]=$(iscsi_url "$tid" 1)
    elif grep -q "not supported by this build" <<<"$out"; then
        note "vdlvm-clone not run: this build has no thin layout ($out)"
        stores=$(sed 's/ *vdlvm-clone//' <<<"$stores")
    else
        fail "vdlvm-clone setup failed: $out"
    fi
fi

# ---- running ------------------------------------------------------------------
problems=()
start_all=$(date +%s)
for store in $stores; do
    : > "$results/$store.res"
    t0=$(date +%s)
    for suite in "${suites[@]}"; do
        out=$results/$store.$suite.txt
        rc=0
        (cd "$tmp" && timeout -k 10 "$suite_timeout" stdbuf -oL -eL \
            iscsi-test-cu -d "${url[$store]}" -t "ALL.$suite") </dev/null > "$out" 2>&1 || rc=$?
        cu_verdicts "$suite" "$out" "$rc" "$results/tests.txt" > "$results/$store.$suite.res"
        cat "$results/$store.$suite.res" >> "$results/$store.res"
        # Cross-check with CUnit's own "tests TOTAL RAN PASSED FAILED" line.
        cu=$(awk '$1 == "tests" && NF >= 5 { print $4 " " $5 }' "$out" | tail -n1)
        if [ -n "$cu" ]; then
            mine="$(grep -cv ' FAIL' "$results/$store.$suite.res" || true) $(grep -c ' FAIL' "$results/$store.$suite.res" || true)"
            [ "$cu" = "$mine" ] ||
                problems+=("$store $suite: parsed pass/fail '$mine' but CUnit says '$cu' (see $out)")
        fi
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
            note "$store: suite $suite timed out after ${suite_timeout}s"
        fi
    done
    note "$store: ran ${#suites[@]} suites in $(( $(date +%s) - t0 ))s"
    kill -0 "$tgtd_pid" 2>/dev/null || fail "tgtd died during the $store run"
done

# ---- results ------------------------------------------------------------------
verdict_of() { cu_verdict_of "$results/$1.res" "$2"; }

echo
printf '%-10s %7s %7s %7s %7s   (CUnit "passed" = pass + skip)\n' store pass skip fail passed
declare -A n_pass=() n_skip=() n_fail=()
for store in $stores; do
    p=$(cu_count "$results/$store.res" PASS)
    s=$(cu_count "$results/$store.res" SKIP)
    f=$(cu_count "$results/$store.res" FAIL)
    printf '%-10s %7d %7d %7d %7d\n' "$store" "$p" "$s" "$f" $((p + s))
    n_pass[$store]=$p n_skip[$store]=$s n_fail[$store]=$f
done

if has_store rdwr && has_store vdlvm; then
    echo
    echo "tests whose results differ (rdwr -> vdlvm):"
    printf '  %-50s %-6s %-6s %s\n' test rdwr vdlvm note
    ndiff=0
    while read -r t; do
        a=$(verdict_of rdwr "$t"); b=$(verdict_of vdlvm "$t")
        [ "$a" = "$b" ] && continue
        ndiff=$((ndiff + 1))
        n=
        if [ "$b" = FAIL ]; then n="REGRESSION"; problems+=("$t fails on vdlvm but not on rdwr")
        elif [ "$a" = FAIL ]; then n="fixed"
        elif [ "$a" = SKIP ]; then n="runs on vdlvm"
        else n="skipped on vdlvm"; fi
        printf '  %-50s %-6s %-6s %s\n' "$t" "$a" "$b" "$n"
    done < "$results/tests.txt"
    [ "$ndiff" -gt 0 ] || echo "  (none)"
    echo
    echo "tests failing on both (tgt core; see shared docs/tgt-backing-store.md):"
    both=$(join <(awk '$2=="FAIL"{print $1}' "$results/rdwr.res" | sort) \
                <(awk '$2=="FAIL"{print $1}' "$results/vdlvm.res" | sort))
    if [ -n "$both" ]; then sed 's/^/  /' <<<"$both"; else echo "  (none)"; fi
fi

# Thin: vdlvm-thin and vdlvm-clone (a clone is a thin LUN) against
# rdwr-thin (and rdwr: a test passing there must not fail on them either).
for ts in vdlvm-thin vdlvm-clone; do
    has_store "$ts" && { has_store rdwr-thin || has_store rdwr; } || continue
    echo
    echo "thin: tests whose results differ (rdwr-thin -> $ts; rdwr for reference):"
    printf '  %-50s %-9s %-11s %-6s %s\n' test rdwr-thin "$ts" rdwr note
    ndiff=0
    while read -r t; do
        a=-; r=-
        has_store rdwr-thin && a=$(verdict_of rdwr-thin "$t")
        has_store rdwr && r=$(verdict_of rdwr "$t")
        b=$(verdict_of "$ts" "$t")
        [ "$a" = "$b" ] && { [ "$b" != FAIL ] || [ "$r" != PASS ]; } && continue
        ndiff=$((ndiff + 1))
        n=
        if [ "$b" = FAIL ] && { [ "$a" != FAIL ] || [ "$r" = PASS ]; }; then
            n="REGRESSION"; problems+=("$t fails on $ts but not on rdwr-thin (or passes on rdwr)")
        elif [ "$a" = FAIL ]; then n="fixed"
        elif [ "$a" = SKIP ]; then n="runs on $ts"
        else n="skipped on $ts"; fi
        printf '  %-50s %-9s %-11s %-6s %s\n' "$t" "$a" "$b" "$r" "$n"
    done < "$results/tests.txt"
    [ "$ndiff" -gt 0 ] || echo "  (none)"
done

for vs in vdlvm vdlvm-thin vdlvm-clone; do
    has_store "$vs" || continue
    vp=$(( n_pass[$vs] + n_skip[$vs] ))
    if [ "$ntests" -ge 230 ] && [ "$vp" -lt "$min_pass" ]; then
        problems+=("$vs passes $vp tests, fewer than $min_pass")
    fi
    for t in ALL.CompareAndWrite.Simple ALL.CompareAndWrite.Miscompare; do
        grep -qx "$t" "$results/tests.txt" || continue
        v=$(verdict_of "$vs" "$t")
        [ "$v" = PASS ] || problems+=("$t on $vs: $v (must run and pass)")
    done
done
if has_store vdlvm-thin && has_store rdwr-thin && [ "$ntests" -ge 230 ] &&
   [ "${n_skip[vdlvm-thin]}" -ge "${n_skip[rdwr-thin]}" ]; then
    problems+=("vdlvm-thin skips ${n_skip[vdlvm-thin]} tests, not fewer than rdwr-thin's ${n_skip[rdwr-thin]}")
fi
if has_store vdlvm-thin; then
    echo
    echo "thin: vdlvm-thin ${n_pass[vdlvm-thin]} passed, ${n_skip[vdlvm-thin]} skipped, ${n_fail[vdlvm-thin]} failed$(
        has_store rdwr-thin && echo "; rdwr-thin ${n_pass[rdwr-thin]} passed, ${n_skip[rdwr-thin]} skipped, ${n_fail[rdwr-thin]} failed")"
fi

# Closing line, per test of the last store (vdlvm when it ran): passed =
# ran and passed; failed = fails here but not on rdwr, or a test that must
# pass did not; skipped = skipped by the suite, or failing on rdwr too
# (tgt core, listed above).
last=${stores##* }
cp=0 cf=0 cs=0
while read -r t v _; do
    ref=
    case $last in
        vdlvm) has_store rdwr && ref=$(verdict_of rdwr "$t") ;;
        vdlvm-thin) has_store rdwr-thin && ref=$(verdict_of rdwr-thin "$t") ;;
    esac
    must=0
    case $last in vdlvm|vdlvm-thin)
        case $t in ALL.CompareAndWrite.Simple|ALL.CompareAndWrite.Miscompare) must=1 ;; esac ;;
    esac
    if [ "$v" = PASS ]; then cp=$((cp + 1))
    elif [ "$must" = 1 ]; then cf=$((cf + 1))
    elif [ "$v" = SKIP ]; then cs=$((cs + 1))
    elif [ "$ref" = FAIL ] || [ "$last" = rdwr ] || [ "$last" = rdwr-thin ]; then cs=$((cs + 1))
    else cf=$((cf + 1)); fi
done < "$results/$last.res"

echo
echo "conformance ran in $(( $(date +%s) - start_all ))s; $([ -n "${CONF_RESULTS:-}" ] &&
    echo "raw output in $results" || echo "set CONF_RESULTS=DIR to keep the raw output")"
echo "per test on $last: skipped = skipped by the suite or failing on tgt's rdwr too"
if [ ${#problems[@]} -gt 0 ]; then
    printf 'conformance FAILED: %s\n' "${problems[@]}"
    echo "conformance: $cp passed, $((cf > 0 ? cf : 1)) failed, $cs skipped"
    [ -n "${CONF_RESULTS:-}" ] || { _rm_tmp() { note "kept $tmp for inspection"; }; }
    exit 1
fi
echo "conformance OK"
echo "conformance: $cp passed, $cf failed, $cs skipped"
