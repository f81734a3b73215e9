#!/bin/bash
# The man pages agree with the command: every command of `vdlvm --help` has
# an entry (.SS) under COMMANDS in vdlvm(8), and every entry there is a
# command of `vdlvm --help`; each of them answers `vdlvm COMMAND --help`.
# Every page renders without a warning (man --warnings, groff -ww).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_file "$VDLVM"
requires command -v groff
requires command -v man

mandir=$top_srcdir/docs/man
for p in vdlvm.8 vdload.1 vdlvm.yaml.5; do
    [ -f "$mandir/$p" ] || fail "$mandir/$p is missing"
    w=$(LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$mandir/$p" 2>&1 >/dev/null) ||
        fail "man -l $p failed: $w"
    [ -z "$w" ] || fail "$p renders with warnings: $w"
done

# Commands: the leading lowercase words (at most two) of a line.
words() { awk '{ n = 0; s = ""
                 for (i = 1; i <= NF && n < 2; i++) {
                     if ($i !~ /^[a-z]+$/) break
                     s = s (n ? " " : "") $i; n++ }
                 if (n) print s }'; }
# vdlvm --help: lines indented by exactly two spaces, before "Options:".
"$VDLVM" --help > "$tmp/help.txt" # whole, not into a sed that quits early (SIGPIPE)
sed -n '/^Options:/q; /^  [a-z]/p' "$tmp/help.txt" | words | sort -u > "$tmp/help"
# vdlvm.8: the .SS headings of COMMANDS.
sed -n '/^\.SH COMMANDS/,/^\.SH /p' "$mandir/vdlvm.8" | sed -n 's/^\.SS "\(.*\)"$/\1/p' |
    sed 's/\\-/-/g' | words | sort -u > "$tmp/man"
[ -s "$tmp/help" ] || fail "no commands found in vdlvm --help"
[ -s "$tmp/man" ] || fail "no commands found in vdlvm.8"
note "commands: $(tr '\n' ',' < "$tmp/help")"
only_help=$(comm -23 "$tmp/help" "$tmp/man")
only_man=$(comm -13 "$tmp/help" "$tmp/man")
[ -z "$only_help" ] || fail "in vdlvm --help but not in vdlvm(8): $only_help"
[ -z "$only_man" ] || fail "in vdlvm(8) but not in vdlvm --help: $only_man"
while read -r c; do
    # shellcheck disable=SC2086
    "$VDLVM" $c --help > "$tmp/c.out" 2>&1 || fail "vdlvm $c --help failed: $(cat "$tmp/c.out")"
    grep -q "^Usage:" "$tmp/c.out" || fail "vdlvm $c --help prints no usage: $(cat "$tmp/c.out")"
done < "$tmp/help"
note "$(wc -l < "$tmp/help") commands in both vdlvm --help and vdlvm(8)"
