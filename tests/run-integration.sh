#!/bin/bash
# Usage: tests/run-integration.sh BUILD [TEST...]
#
# Runs every tests/integration/test-*.sh (or the named ones) one after the
# other with BUILD exported, each under a time limit (TEST_TIMEOUT seconds,
# default 600).  Exit 77 from a test means skipped.  Prints each test's
# output, a summary, and the closing line "N passed, N failed, N skipped";
# exits non-zero if any test failed.
set -uo pipefail

[ $# -ge 1 ] || { echo "usage: $0 BUILD [TEST...]" >&2; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd) || { echo "$0: no build directory $1" >&2; exit 2; }
export BUILD
shift
timeout_s=${TEST_TIMEOUT:-600}

if [ $# -gt 0 ]; then
    tests=("$@")
else
    tests=("$top"/tests/integration/test-*.sh)
fi

pass=0 failn=0 skipn=0
failed=() skipped=()
for t in "${tests[@]}"; do
    [ -f "$t" ] || { echo "$0: no test $t" >&2; failn=$((failn+1)); failed+=("$t"); continue; }
    name=$(basename "$t" .sh)
    echo "=== $name"
    start=$(date +%s)
    # timeout signals the test's whole process group; the test's EXIT trap
    # stops what it started.  SIGKILL 30 s later if cleanup hangs.
    timeout -k 30 "$timeout_s" bash "$t"
    rc=$?
    secs=$(( $(date +%s) - start ))
    case $rc in
        0)   echo "--- PASS: $name (${secs}s)"; pass=$((pass+1)) ;;
        77)  echo "--- SKIP: $name (${secs}s)"; skipn=$((skipn+1)); skipped+=("$name") ;;
        124|137)
             echo "--- FAIL: $name (timed out after ${timeout_s}s)"
             failn=$((failn+1)); failed+=("$name") ;;
        *)   echo "--- FAIL: $name (exit $rc, ${secs}s)"; failn=$((failn+1)); failed+=("$name") ;;
    esac
done

echo
echo "integration summary:"
[ ${#failed[@]} = 0 ] || printf '  failed:  %s\n' "${failed[@]}"
[ ${#skipped[@]} = 0 ] || printf '  skipped: %s\n' "${skipped[@]}"
echo "$pass passed, $failn failed, $skipn skipped"
[ "$failn" = 0 ]
