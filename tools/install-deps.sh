#!/bin/bash
# Install what vdlvm needs to build, test and demo on Debian 12 (run as root).
#
# Idempotent and quick when everything is present (checked with dpkg-query).
# Also writes the project's own deb-src entry (needed by tools/fetch-tgt-src.sh)
# and makes sure the package install does not leave the distribution's tgtd
# service running (it would listen on 0.0.0.0:3260 with control port 0).
set -euo pipefail

PACKAGES=(tgt libiscsi-dev libiscsi-bin libyaml-dev libssl-dev googletest
          libgtest-dev qemu-utils qemu-block-extra dpkg-dev gnuplot-nox
          iproute2 gcc g++ make xz-utils debian-archive-keyring libblkid-dev
          e2fsprogs util-linux clang-format debhelper lintian man-db systemd
          bash-completion clang libclang-rt-14-dev
          librbd-dev liburing-dev ceph-mon ceph-osd ceph-mgr ceph-common tgt-rbd
          prometheus jq python3)
# prometheus: for promtool only (tests check `vdlvm stats --prometheus` with
# `promtool check metrics`).  Debian 12 ships promtool in no smaller package
# (the golang-github-prometheus-* packages are Go sources, no binary): 19 MB
# download, 96 MB installed.  Its server is kept from running (see below).
SRC_LIST=/etc/apt/sources.list.d/vdlvm-deb-src.sources
BSDIR=/usr/lib/tgt/backing-store

say() { echo "install-deps: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, /etc/apt, $BSDIR)"
command -v dpkg-query >/dev/null || die "dpkg-query not found; vdlvm supports Debian 12 only"

# ---- deb-src entry (deb822), rewritten only when it differs ---------------
write_src_list() {
    local want
    want=$(cat <<'EOF'
# Written by vdlvm tools/install-deps.sh: sources of Debian packages, used to
# fetch the tgt source of exactly the installed version (tgt ships no headers).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
)
    if [ ! -f "$SRC_LIST" ] || [ "$(cat "$SRC_LIST")" != "$want" ]; then
        printf '%s\n' "$want" > "$SRC_LIST.tmp.$$"
        mv -f "$SRC_LIST.tmp.$$" "$SRC_LIST"
        say "wrote $SRC_LIST"
    fi
}

missing_packages() {
    local p st
    for p in "${PACKAGES[@]}"; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$st" = installed ] || echo "$p"
    done
}

# PID of the distribution's tgt service (started by the package's init
# script or systemd unit: /usr/sbin/tgtd -f on control port 0), or nothing.
# Test and demo tgtds always run with -C N and are left alone.
distro_tgtd_pid() {
    local pid args
    for pid in $(pidof /usr/sbin/tgtd 2>/dev/null || true); do
        args=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)
        case " $args " in
            *" -C "*|*" --control-port "*|*" -C"[0-9]*) continue ;;
        esac
        echo "$pid"
    done
}

stop_distro_tgtd() {
    local pid i
    pid=$(distro_tgtd_pid | head -n1)
    [ -n "$pid" ] || return 0
    say "stopping the tgt service started by the package install (pid $pid)"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl stop tgt.service || true
    else
        /etc/init.d/tgt forcedstop >/dev/null 2>&1 || /etc/init.d/tgt stop >/dev/null 2>&1 || true
    fi
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        # tgtd ignores SIGTERM: take targets down over its control port 0.
        tgtadm -C 0 --mode sys --op update --name State -v offline >/dev/null 2>&1 || true
        for tid in $(tgtadm -C 0 --mode target --op show 2>/dev/null |
                     sed -n 's/^Target \([0-9]*\):.*/\1/p'); do
            tgtadm -C 0 --mode target --op delete --tid "$tid" --force >/dev/null 2>&1 || true
        done
        tgtadm -C 0 --mode system --op delete >/dev/null 2>&1 || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        say "tgt service (pid $pid) did not stop; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f /run/tgtd.pid
}

write_src_list

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing: ${missing[*]}"
    # Keep the package scripts from starting services (the tgt service would
    # take port 3260); a policy-rc.d of our own only if none exists.
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, from vdlvm tools/install-deps.sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    had_tgt=$(distro_tgtd_pid | head -n1)
    rc=0
    { apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } || rc=$?
    [ -n "$own_policy" ] && rm -f "$policy"
    [ "$rc" = 0 ] || die "apt-get failed (exit $rc) installing: ${missing[*]}"
    # Stop a service the install started, never one that ran before.
    [ -n "$had_tgt" ] || stop_distro_tgtd
    # The Prometheus server (and the node exporter it recommends) came only
    # for promtool: keep them from starting at boot when we installed them.
    if printf '%s\n' "${missing[@]}" | grep -qx prometheus &&
       [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl disable --now prometheus.service \
            prometheus-node-exporter.service >/dev/null 2>&1 || true
    fi
    mapfile -t still < <(missing_packages)
    [ "${#still[@]}" = 0 ] || die "still missing after install: ${still[*]}"
fi

# tgtd loads modules only from here; tests bind-mount over it, so it must exist.
[ -d "$BSDIR" ] || install -d -m 0755 "$BSDIR"
exit 0
