#!/bin/bash
# Smoke run of tests/bench/async-direct.sh (issue 14's `direct:` rows):
# one repetition of 1 s on 16 MiB LUNs; the table has a row for every
# backing and workload, every store measured (IOPS > 0).  No timing is
# asserted.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_root
requires_tgtd
requires_vdlvm
requires losetup --version
requires_file "$BUILD/vdload"

out=$tmp/table.md
BENCH_LUN_MIB=16 bash "$top_srcdir/tests/bench/async-direct.sh" 1 1 > "$out" 2> "$tmp/err" ||
    fail "async-direct.sh failed: $(tail -n 20 "$tmp/err")"
rows=$(grep -cE '^\| (ext4|loop) \| (randread-4k|randwrite-4k|seqread-1m|seqwrite-1m) \|' "$out" || true)
[ "$rows" = 8 ] || fail "expected 8 rows (2 backings x 4 workloads), got $rows: $(cat "$out")"
# columns 3-6: rdwr aio vdlvm-buf vdlvm-direct IOPS, all measured
awk -F'|' '/^\| (ext4|loop) /{ for (i = 4; i <= 7; i++) if ($i + 0 <= 0) { print; bad = 1 } } END { exit bad }' "$out" ||
    fail "a store measured 0 IOPS: $(cat "$out")"
note "async-direct.sh smoke: 8 rows, every store measured"
