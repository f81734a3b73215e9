#!/bin/sh
# Group crash inputs by where they fail: triage.sh HARNESS FILE...
# (docs/fuzz.md).  Prints, per input, the sanitizer's kind of error and
# the first frame in vdlvm's code.
h=$1; shift
for f in "$@"; do
    out=$(timeout 60 ${FZ:-build-fuzz}/fuzz-$h "$f" 2>&1)
    kind=$(printf '%s\n' "$out" | grep -Eo 'ERROR: [A-Za-z]+: [a-z-]+|runtime error: [^:]*|ERROR: libFuzzer: [a-z-]+' | head -1)
    where=$(printf '%s\n' "$out" | grep -E '#[0-9]+ .* in [a-z_]+ /.*/(pool|config|replica|admin|tgt-backend)/' | head -1 | sed 's/.* in //')
    [ -n "$kind$where" ] || { kind="no failure"; where=""; }
    echo "$(basename "$f"): $kind @ $where"
done
