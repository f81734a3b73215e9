#!/bin/bash
# integration: solo
# Smoke run of the benchmark (tests/bench/run.sh --quick, one short run per
# cell) so `make bench` cannot rot: every store and workload must produce
# numbers (the remote rows too, unless this machine cannot make network
# namespaces), and the markdown report and PNG chart must be written.
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires command -v gnuplot
requires_file "$BUILD/vdload"

out=$tmp/results
if ! timeout 400 "$top_srcdir/tests/bench/run.sh" "$BUILD" --quick --out "$out" >"$tmp/bench.out" 2>&1; then
    tail -n 60 "$tmp/bench.out" >&2
    # The reason, which the tgtd logs printed at exit may have pushed out.
    grep -E '^bench: (FAIL|SKIP|run )' "$tmp/bench.out" >&2
    fail "tests/bench/run.sh --quick failed"
fi
md=$out/latest.md
[ -s "$md" ] || fail "no report written"
[ -s "$out/latest.png" ] || fail "no chart written"
file_type=$(head -c 8 "$out/latest.png" | od -An -c | tr -d ' ')
[ "$file_type" = '211PNG\r\n032\n' ] || fail "latest.png is not a PNG"
for w in "4 KiB random read" "4 KiB random write" "4 KiB sequential write" \
         "1 MiB sequential read" "1 MiB sequential write"; do
    grep -q "^## $w" "$md" || fail "report lacks the '$w' table"
done
stores="rdwr aio null"
if [ -x "$VDLVM" ] && [ -f "$BSDIR/bs_vdlvm.so" ]; then
    stores+=" vdlvm-1 vdlvm-3 vdlvm-1-noinline"
    # The remote rows need network namespaces; without them (and only then)
    # run.sh reports them as not measured, with the reason.
    nonetns=$(grep '^- `vdlvm-remote`: not measured: network namespaces not possible here' "$md" || true)
    if [ -n "$nonetns" ]; then
        note "SKIP remote rows: ${nonetns#- }"
    else
        stores+=" rdwr-peer vdlvm-remote"
    fi
fi
for s in $stores; do
    [ "$(grep -c "^| $s | [0-9]" "$md")" = 5 ] || fail "report lacks numbers for $s: $(cat "$md")"
done
note "ok: $(tail -n 1 "$md")"
