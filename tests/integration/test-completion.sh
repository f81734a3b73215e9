#!/bin/bash
# Bash completion (contrib/bash-completion/vdlvm): commands (every command
# of `vdlvm --help`), subcommands, options of a command, pools (CONFDIR,
# the registry, activation paths), volumes (POOL/ -> its volumes, from the
# activation paths or `vdlvm vol list`), devices (--replace/--with: the
# pool definition's names), files for -c.
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_file "$VDLVM"
[ -f /usr/share/bash-completion/bash_completion ] ||
    skip "bash-completion is not installed (tools/install-deps.sh installs it)"

mkdir -p "$tmp/bin"
ln -s "$VDLVM" "$tmp/bin/vdlvm"
conf=$(make_pool_conf p0 2 64MiB)
"$VDLVM" pool create "$conf" > /dev/null || fail "pool create p0 failed"
"$VDLVM" vol create p0/v0 --size 8MiB > /dev/null || fail "vol create failed"
"$VDLVM" vol create p0/v1 --size 8MiB > /dev/null || fail "vol create failed"
mkdir -p "$tmp/defs"
printf 'pool: q1\ndevices:\n  - name: e0\n    path: %s/q1.img\n    size: 64MiB\n' "$tmp" > "$tmp/defs/q1.yaml"
"$VDLVM" pool create "$tmp/defs/q1.yaml" > /dev/null || fail "pool create q1 failed"
"$VDLVM" vol create q1/w0 --size 8MiB > /dev/null || fail "vol create failed"
"$VDLVM" activate q1 > /dev/null || fail "activate q1 failed"

# complete WORD...: the completions of the last word, one line, sorted.
complete_words() {
    PATH=$tmp/bin:$PATH bash -c '
        source /usr/share/bash-completion/bash_completion
        source "$0"
        COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        _vdlvm vdlvm "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
        printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
        "$top_srcdir/contrib/bash-completion/vdlvm" "$@"
}
expect() {   # expect "WANT" WORD...
    local want=$1 got
    shift
    got=$(complete_words "$@")
    [ "$got" = "$want" ] || fail "completing '$*': got '$got', want '$want'"
}

# Every command of --help (first word) is offered.
got=" $(complete_words vdlvm '') "
for c in $("$VDLVM" --help | sed -n '/^Options:/q; s/^  \([a-z][a-z]*\).*/\1/p' | sort -u); do
    [[ $got == *" $c "* ]] || fail "command '$c' of vdlvm --help is not completed: $got"
done
expect "clone create encrypt export extend import list remove repair revert set " vdlvm vol ''
expect "apply check create list rebalance remove takeover " vdlvm pool ''
expect "verify version " vdlvm ver
expect "p0 q1 " vdlvm status ''
expect "p0/ q1/ " vdlvm vol extend ''
expect "p0/v0 p0/v1 " vdlvm vol extend p0/          # through vdlvm vol list
expect "q1/w0 " vdlvm export q1/                    # activation paths
expect "--size " vdlvm vol extend p0/v0 --s
expect "d0 d1 " vdlvm vol repair p0/v0 --replace ''  # the definition's devices
expect "e0 " vdlvm -c "$tmp/defs/q1.yaml" vol repair q1/w0 --with ''
expect "linear mirror " vdlvm vol create p0/x --layout ''
expect "p0/ q1/ " vdlvm dev evacuate ''              # POOL/DEV
expect "p0/d0 p0/d1 " vdlvm dev evacuate p0/
expect "d0 d1 " vdlvm dev evacuate p0/d0 --to ''
expect "vmdk " vdlvm vol import p0/x img.raw --format vm
note "commands, pools, volumes, devices and options complete"
