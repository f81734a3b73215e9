#!/bin/bash
# The C code follows the committed .clang-format (`clang-format --dry-run
# --Werror` finds nothing to change).  Checked folders: FORMAT_DIRS, default
# the ones formatted so far; pool/, replica/ and config/ join once formatted.
source "$(dirname "$0")/../functions.sh"
requires command -v clang-format
cd "$top_srcdir"
[ -f .clang-format ] || fail "no .clang-format at the top of the tree"

dirs=${FORMAT_DIRS:-admin tools tgt-backend pool replica config}
files=()
for d in $dirs; do
    for f in "$d"/*.c "$d"/*.h; do
        [ -e "$f" ] && files+=("$f")
    done
done
[ ${#files[@]} -gt 0 ] || fail "no C files in $dirs"
out=$(clang-format --style=file --dry-run --Werror "${files[@]}" 2>&1) ||
    fail "not formatted per .clang-format (run: clang-format -i FILE):
$(grep -E '^[^ ]+:[0-9]+:[0-9]+: error' <<<"$out" | cut -d: -f1 | sort | uniq -c)"
note "${#files[@]} files in $dirs follow .clang-format"
