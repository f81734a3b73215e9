#!/bin/bash
# integration: solo
# The Debian package, from build to purge, on this machine:
#   - make deb builds build/deb/vdlvm_*.deb; lintian reports no error;
#   - it depends on exactly the installed tgt version;
#   - a /usr/local install (make install) is moved aside first and put back
#     at the end, so the package's files are the only vdlvm on the machine;
#   - apt-get installs it; systemd-analyze verify accepts its units (with
#     tgt.service and the drop-in); man pages and completion are in place;
#   - the demo runs from the installed files only (PATH without the build,
#     tgtd loading /usr/lib/tgt/backing-store/bs_vdlvm.so of the package);
#   - boot as systemd would, with the installed files (no systemd runs
#     here): the vdlvm-activate unit's ExecStart, then tgtd and
#     tgt.service's own ExecStartPost lines (tgt-admin -e) on a private
#     control port and a targets.conf including a file written by
#     `vdlvm export`; the LUN is readable, and after tgt.service's ExecStop
#     lines (tgtd exits: the pool's lock is released) and a new boot it is
#     back with the same data;
#   - apt-get purge leaves none of the files `dpkg -L vdlvm` listed.
# Takes about 1-2 minutes (the package build is most of it).
set -euo pipefail
source "$(dirname "$0")/../functions.sh"
requires_tgtd
requires command -v apt-get
requires command -v dpkg-buildpackage
command -v dh >/dev/null || skip "debhelper is not installed (tools/install-deps.sh installs it)"
requires command -v tgt-admin
requires command -v qemu-img
requires command -v iscsi-readcapacity16
if dpkg-query -W -f='${db:Status-Status}' vdlvm 2>/dev/null | grep -qx installed; then
    skip "a vdlvm package is installed on this machine; this test would replace it and could not put it back"
fi

top=$top_srcdir
MiB=$((1024 * 1024))
TGT_BSDIR=/usr/lib/tgt/backing-store
tgt_version=$(dpkg-query -W -f='${Version}' tgt)

# ---- build --------------------------------------------------------------
# A copy of the checkout, so that build/deb of the developer's tree stays
# as it is; build/tgt-src is the same source.
src=$tmp/src
mkdir -p "$src"
(cd "$top" && tar -c --exclude=./build --exclude=./build-asan --exclude=./.git --exclude='*.o' .) |
    tar -x -C "$src"
mkdir -p "$src/build"
[ -f "$top/build/tgt-src/usr/tgtd.h" ] || skip "build/tgt-src is missing: run make (it fetches the tgt source)"
ln -s "$(readlink -f "$top/build/tgt-src")" "$src/build/tgt-src"
start=$SECONDS
make -C "$src" deb > "$tmp/deb.log" 2>&1 || fail "make deb failed: $(tail -n 30 "$tmp/deb.log")"
deb=$(ls "$src"/build/deb/vdlvm_*.deb | grep -v dbgsym)
[ -f "$deb" ] || fail "make deb made no vdlvm_*.deb: $(ls "$src/build/deb")"
note "built $(basename "$deb") in $((SECONDS - start)) s"
dep=$(dpkg-deb -f "$deb" Depends)
grep -q "tgt (= $tgt_version)" <<<"$dep" || fail "the package does not depend on tgt (= $tgt_version): $dep"
if command -v lintian >/dev/null; then
    lintian --tag-display-limit 0 "$deb" > "$tmp/lintian.out" 2>&1 || true
    sed 's/^/    lintian: /' "$tmp/lintian.out" >&2
    ! grep -q '^E:' "$tmp/lintian.out" || fail "lintian reports errors"
else
    note "lintian not installed: not run (tools/install-deps.sh installs it)"
fi

# ---- a /usr/local install moves aside --------------------------------------
local_files=(/usr/local/bin/vdlvm /usr/local/bin/vdload "$TGT_BSDIR/bs_vdlvm.so"
             /usr/local/share/man/man8/vdlvm.8 /usr/local/share/man/man1/vdload.1
             /usr/local/share/man/man5/vdlvm.yaml.5
             /usr/local/share/bash-completion/completions/vdlvm
             /usr/local/lib/systemd/system/vdlvm-activate.service
             /usr/local/lib/systemd/system/tgt.service.d/vdlvm.conf)
saved=()
for f in "${local_files[@]}"; do [ -e "$f" ] && saved+=("$f"); done
restore_local() {
    [ "${#saved[@]}" -gt 0 ] || return 0
    tar -x -P -f "$tmp/local.tar" && note "put back the /usr/local install: ${saved[*]}"
}
if [ "${#saved[@]}" -gt 0 ]; then
    tar -c -P -f "$tmp/local.tar" "${saved[@]}" || fail "cannot save the /usr/local install"
    cleanup_fn restore_local
    rm -f "${saved[@]}"
    note "moved the /usr/local install aside: ${saved[*]}"
fi

# ---- install ---------------------------------------------------------------
apt_get() {
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get -q -y -o DPkg::Lock::Timeout=120 "$@"
}
purge_pkg() {
    dpkg-query -W -f='${db:Status-Status}' vdlvm 2>/dev/null | grep -qx installed || return 0
    apt_get purge vdlvm > "$tmp/purge.log" 2>&1 || note "apt-get purge vdlvm failed: $(tail "$tmp/purge.log")"
}
cleanup_fn purge_pkg
# Folders of the package that exist before it (e.g. the module folder
# tools/install-deps.sh makes: tgt does not ship it): dpkg removes them at
# purge when empty, and they are made again.
pre_dirs=()
while read -r d; do
    [ -d "$d" ] && pre_dirs+=("$d")
done < <(dpkg-deb -c "$deb" | awk '$1 ~ /^d/ { sub(/^\./, "", $6); sub(/\/$/, "", $6); if ($6 != "") print $6 }')
restore_dirs() {
    local d
    for d in "${pre_dirs[@]}"; do [ -d "$d" ] || install -d -m 0755 "$d"; done
}
cleanup_fn restore_dirs
apt_get install "$deb" > "$tmp/install.log" 2>&1 || fail "apt-get install failed: $(tail -n 20 "$tmp/install.log")"
dpkg -L vdlvm | sort > "$tmp/files"
for f in /usr/bin/vdlvm /usr/bin/vdload "$TGT_BSDIR/bs_vdlvm.so" /usr/share/man/man8/vdlvm.8.gz \
         /usr/share/man/man1/vdload.1.gz /usr/share/man/man5/vdlvm.yaml.5.gz \
         /usr/share/bash-completion/completions/vdlvm /lib/systemd/system/vdlvm-activate.service \
         /lib/systemd/system/tgt.service.d/vdlvm.conf /usr/share/doc/vdlvm/README.md.gz \
         /usr/share/vdlvm/demo.sh; do
    grep -qx "$f" "$tmp/files" || fail "the package does not hold $f"
    [ -e "$f" ] || fail "$f is not installed"
done
export PATH=/usr/sbin:/usr/bin:/sbin:/bin       # the installed files only
[ "$(type -P vdlvm)" = /usr/bin/vdlvm ] || fail "vdlvm is $(type -P vdlvm)"
/usr/bin/vdlvm --version | grep -q "built for tgt $tgt_version" || fail "vdlvm --version: $(/usr/bin/vdlvm --version)"
[ "$(man -w vdlvm)" = /usr/share/man/man8/vdlvm.8.gz ] || fail "man -w vdlvm: $(man -w vdlvm 2>&1)"
man -w vdlvm.yaml >/dev/null && man -w vdload >/dev/null || fail "man pages vdlvm.yaml(5)/vdload(1) not found"
bash -c 'source /usr/share/bash-completion/completions/vdlvm && complete -p vdlvm' >/dev/null 2>&1 ||
    fail "the bash completion does not load"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify vdlvm-activate.service tgt.service > "$tmp/verify.out" 2>&1 ||
        fail "systemd-analyze verify failed: $(cat "$tmp/verify.out")"
    [ ! -s "$tmp/verify.out" ] || fail "systemd-analyze verify: $(cat "$tmp/verify.out")"
else
    note "systemd-analyze not found: units not verified"
fi

# ---- the demo, from the installed files ------------------------------------
export VDLVM_DEMO_DIR=$tmp/demo VDLVM_DEMO_PIDFILE=$tmp/demo-tgtd.pid
export VDLVM_DEMO_CTL=$(pick_ctl_port) VDLVM_DEMO_PORT=$(pick_port "")
demo_kill() {
    local pid
    pid=$(cat "$VDLVM_DEMO_PIDFILE" 2>/dev/null) || return 0
    /usr/share/vdlvm/demo.sh stop --purge >/dev/null 2>&1 || true
    kill -0 "$pid" 2>/dev/null && _stop_pid "$pid"
    return 0
}
cleanup_fn demo_kill
timeout 120 /usr/share/vdlvm/demo.sh start > "$tmp/demo.out" 2>&1 || fail "demo start failed: $(cat "$tmp/demo.out")"
grep -q '^2147483648 bytes' "$tmp/demo.out" || fail "the demo LUN is not 2 GiB: $(cat "$tmp/demo.out")"
demo_pid=$(cat "$VDLVM_DEMO_PIDFILE")
grep -q "bs_vdlvm.so" "/proc/$demo_pid/maps" || fail "the demo's tgtd did not load bs_vdlvm.so"
grep -q " $TGT_BSDIR/bs_vdlvm.so" "/proc/$demo_pid/maps" || fail "the demo's tgtd loaded another bs_vdlvm.so"
timeout 60 /usr/share/vdlvm/demo.sh stop --purge > "$tmp/demo-stop.out" 2>&1 || fail "demo stop failed: $(cat "$tmp/demo-stop.out")"
note "the demo ran from the installed files"

# ---- boot as tgt.service does it, with the installed files -----------------
conf=$(make_pool_conf p0 2 64MiB 4MiB)
vdlvm() { timeout 120 /usr/bin/vdlvm "$@"; }
vdlvm pool create "$conf" > /dev/null || fail "pool create failed"
vdlvm vol create p0/v0 --size 32MiB > /dev/null || fail "vol create failed"
mkdir -p "$tmp/conf.d"
printf 'include %s/*.conf\n' "$tmp/conf.d" > "$tmp/targets.conf"
iqn=$(tgt_iqn deb)
vdlvm export p0/v0 --target "$iqn" --conf "$tmp/conf.d/vdlvm-p0-v0.conf" > /dev/null || fail "vdlvm export failed"
exec_start() {   # the command line of KEY= in a unit file, @BINDIR@ expanded
    sed -n "s/^$2=//p" "$1" | head -n1
}
activate=$(exec_start /lib/systemd/system/vdlvm-activate.service ExecStart)
deactivate=$(exec_start /lib/systemd/system/vdlvm-activate.service ExecStop)
[ "$activate" = "/usr/bin/vdlvm activate" ] || fail "vdlvm-activate.service runs '$activate'"
# tgt.service's own command lines, on our tgtd's control port (-C) and
# targets.conf: ExecStartPost (offline, tgt-admin -e, ready) and ExecStop
# (offline, tgt-admin --offline/--update, delete the system: tgtd exits).
svc=/lib/systemd/system/tgt.service
run_unit_cmds() {
    local key=$1 line cmd
    local -a args
    while read -r line; do
        line=${line//\/etc\/tgt\/targets.conf/$tmp/targets.conf}
        read -r -a args <<<"$line"
        cmd=${args[0]}
        timeout 120 "$cmd" -C "$tgtd_ctl" "${args[@]:1}" > "$tmp/unit-cmd.out" 2>&1 ||
            fail "tgt.service $key '$line' failed: $(cat "$tmp/unit-cmd.out")"
    done < <(sed -n "s/^$key=//p" "$svc")
}
boot() {
    # /run is empty after a reboot; vdlvm-activate.service, then tgt.service.
    $deactivate > /dev/null || fail "'$deactivate' failed"
    [ ! -e "$VDLVM_RUNDIR/vol/p0/v0" ] || fail "'$deactivate' left the activation path"
    $activate > "$tmp/activate.out" 2>&1 || fail "'$activate' failed: $(cat "$tmp/activate.out")"
    start_tgtd --module-dir "$TGT_BSDIR"
    run_unit_cmds ExecStartPost
    url="iscsi://$tgtd_addr:$tgtd_port/$iqn/1"
}
shutdown() {
    run_unit_cmds ExecStop
    wait_for 30 sh -c "! kill -0 $tgtd_pid 2>/dev/null" || fail "tgtd did not exit after tgt.service's ExecStop"
    stop_tgtd
}
grep -q '^ExecStartPost=.*tgt-admin' "$svc" || fail "$svc runs no tgt-admin"
boot
[ "$(iscsi_size "$url")" = $((32 * MiB)) ] || fail "the LUN is not 32 MiB"
random_file "$tmp/in" 32
iscsi_write "$tmp/in" "$url" || fail "write failed"
shutdown
boot
iscsi_read "$url" "$tmp/out" $((32 * MiB)) || fail "read after restart failed"
cmp "$tmp/in" "$tmp/out" || fail "data differs after the restart"
shutdown
vdlvm pool remove p0 --force > /dev/null || fail "pool remove failed"
note "targets.conf LUN back after a restart, with the installed files"

# ---- purge -----------------------------------------------------------------
apt_get purge vdlvm > "$tmp/purge.log" 2>&1 || fail "apt-get purge failed: $(tail "$tmp/purge.log")"
left=()
while read -r f; do
    [ "$f" = /. ] && continue
    if [ -d "$f" ]; then
        # a folder stays only when another package owns it too, or it was
        # there before
        dpkg -S "$f" >/dev/null 2>&1 || [[ " ${pre_dirs[*]} " == *" $f "* ]] || left+=("$f")
    elif [ -e "$f" ] || [ -L "$f" ]; then
        left+=("$f")
    fi
done < "$tmp/files"
[ "${#left[@]}" = 0 ] || fail "left after purge: ${left[*]}"
leftover=$(find /etc/systemd /var/lib/systemd -name '*vdlvm*' 2>/dev/null || true)
[ -z "$leftover" ] || fail "systemd state left after purge: $leftover"
restore_dirs
note "purged: none of the $(wc -l < "$tmp/files") paths of the package is left"
