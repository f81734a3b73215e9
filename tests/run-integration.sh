#!/bin/bash
# Usage: tests/run-integration.sh BUILD [TEST...]
#
# Runs every tests/integration/test-*.sh (or the named ones) with BUILD
# exported, each under a time limit (TEST_TIMEOUT seconds, default 600).
# Exit 77 from a test means skipped.  Prints each test's output when it
# ends (never interleaved), a summary, and the closing line "N passed, N
# failed, N skipped"; exits non-zero if any test failed.
#
# INTEGRATION_JOBS (default 2) tests run at a time.  Tests run in their
# own temporary folders, network namespaces (named after their PID) and
# tgtds on free ports, so they do not see each other.  A test whose file
# has the line "# integration: solo" runs alone, after the others: it
# measures time or latency (a neighbour would skew it) or changes the
# machine's own state (installs a package, the installed tgt's files).
# Tests with the line "# integration: long" (minutes) start first, so that
# the run does not end waiting for one of them alone.
set -uo pipefail

[ $# -ge 1 ] || { echo "usage: $0 BUILD [TEST...]" >&2; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd) || { echo "$0: no build directory $1" >&2; exit 2; }
export BUILD
shift
timeout_s=${TEST_TIMEOUT:-600}
jobs_max=${INTEGRATION_JOBS:-2}
[[ $jobs_max =~ ^[1-9][0-9]*$ ]] || { echo "$0: INTEGRATION_JOBS must be a positive number" >&2; exit 2; }

if [ $# -gt 0 ]; then
    tests=("$@")
else
    tests=("$top"/tests/integration/test-*.sh)
fi

outdir=$(mktemp -d "${TMPDIR:-/tmp}/vdlvm-integration.XXXXXX")
trap 'rm -rf "$outdir"' EXIT

pass=0 failn=0 skipn=0
failed=() skipped=()
t_start=$(date +%s)

# run_one TEST: runs it, output to $outdir/NAME.out, verdict line to
# $outdir/NAME.verdict ("rc secs").
run_one() {
    local t=$1 name start rc
    name=$(basename "$t" .sh)
    start=$(date +%s)
    # timeout signals the test's whole process group; the test's EXIT trap
    # stops what it started.  SIGKILL 30 s later if cleanup hangs.
    timeout -k 30 "$timeout_s" bash "$t" > "$outdir/$name.out" 2>&1 < /dev/null
    rc=$?
    echo "$rc $(( $(date +%s) - start ))" > "$outdir/$name.verdict"
}

# report TEST: prints its output and verdict, counts it.
report() {
    local t=$1 name rc secs
    name=$(basename "$t" .sh)
    read -r rc secs < "$outdir/$name.verdict"
    echo "=== $name"
    cat "$outdir/$name.out"
    case $rc in
        0)   echo "--- PASS: $name (${secs}s)"; pass=$((pass+1)) ;;
        77)  echo "--- SKIP: $name (${secs}s)"; skipn=$((skipn+1)); skipped+=("$name") ;;
        124|137)
             echo "--- FAIL: $name (timed out after ${timeout_s}s)"
             failn=$((failn+1)); failed+=("$name") ;;
        *)   echo "--- FAIL: $name (exit $rc, ${secs}s)"; failn=$((failn+1)); failed+=("$name") ;;
    esac
}

parallel=() solo=() long=()
for t in "${tests[@]}"; do
    if [ ! -f "$t" ]; then
        echo "$0: no test $t" >&2; failn=$((failn+1)); failed+=("$t"); continue
    fi
    if grep -qx '# integration: solo' "$t" || [ "$jobs_max" = 1 ]; then
        solo+=("$t")
    elif grep -qx '# integration: long' "$t"; then
        long+=("$t")
    else
        parallel+=("$t")
    fi
done
parallel=(${long[@]+"${long[@]}"} ${parallel[@]+"${parallel[@]}"})

# The parallel ones: at most jobs_max at a time, reported as they end.
declare -A running=() # pid -> test
for t in ${parallel[@]+"${parallel[@]}"}; do
    while [ "${#running[@]}" -ge "$jobs_max" ]; do
        wait -n
        for pid in "${!running[@]}"; do
            kill -0 "$pid" 2>/dev/null && continue
            wait "$pid"
            report "${running[$pid]}"
            unset "running[$pid]"
        done
    done
    run_one "$t" &
    running[$!]=$t
done
for pid in "${!running[@]}"; do
    wait "$pid"
    report "${running[$pid]}"
done

# The solo ones, one at a time.
for t in ${solo[@]+"${solo[@]}"}; do
    run_one "$t"
    report "$t"
done

echo
echo "integration summary ($(( $(date +%s) - t_start ))s, $jobs_max at a time, ${#solo[@]} alone):"
[ ${#failed[@]} = 0 ] || printf '  failed:  %s\n' "${failed[@]}"
[ ${#skipped[@]} = 0 ] || printf '  skipped: %s\n' "${skipped[@]}"
echo "$pass passed, $failn failed, $skipn skipped"
[ "$failn" = 0 ]
