#!/bin/bash
# bs_vdlvm.so exports only register_bs_module (tgtd dlopens every file in its
# module folder and looks up just that symbol; anything else exported could
# interpose on tgtd's own symbols).
source "$(dirname "$0")/../functions.sh"
requires command -v nm
so=$BSDIR/bs_vdlvm.so
requires_file "$so"

defined=$(nm -D --defined-only "$so" | awk '{print $NF}' | sort) ||
    fail "nm -D $so failed"
note "defined dynamic symbols: $(echo $defined)"
echo "$defined" | grep -qx register_bs_module ||
    fail "$so does not export register_bs_module"
# Tolerate only the toolchain's own entry points.
extra=$(echo "$defined" | grep -vx -e register_bs_module -e _init -e _fini \
            -e _edata -e _end -e __bss_start || true)
[ -z "$extra" ] || fail "$so exports more than register_bs_module: $(echo $extra)"

# register_bs_module must be a function in the text section.
nm -D --defined-only "$so" | grep -Eq '^[0-9a-f]+ T register_bs_module$' ||
    fail "register_bs_module is not a global function"

# Every undefined symbol must be provided by tgtd or a shared library the
# module names (nothing left to chance at dlopen's RTLD_NOW).
if command -v tgtd >/dev/null && [ -x "$(command -v tgtd)" ]; then
    tgtd_syms=$(nm -D --defined-only "$(command -v tgtd)" | awk '{print $NF}' | sort -u)
    lib_syms=$(ldd "$so" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}' | xargs -r nm -D --defined-only 2>/dev/null |
               awk '{print $NF}' | sed 's/@.*//' | sort -u)
    missing=$(nm -D --undefined-only "$so" | awk '$1 == "U" {print $2}' | sed 's/@.*//' |
              sort -u | comm -23 - <(sort -u <(echo "$tgtd_syms") <(echo "$lib_syms")))
    [ -z "$missing" ] || fail "$so needs symbols neither tgtd nor its libraries define: $(echo $missing)"
fi
note "ok"
