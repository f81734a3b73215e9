#!/bin/bash
# vdload against a stock tgt rdwr LUN on a sparse file: a verify run finds
# nothing wrong, survives a dropped session, and after blocks of the backing
# file are damaged behind the target's back reports exactly those LBAs.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/vdload-common.sh"
requires_tgtd
requires_file "$VDLOAD"

start_tgtd --no-module
truncate -s 64M "$tmp/disk.img"
tgt_target_new 1 vdload || fail "cannot create target"
tgt_lun_new 1 1 rdwr "$tmp/disk.img" || fail "cannot create rdwr LUN"
url=$(iscsi_url 1 1)

# usage errors change nothing and say what is wrong
expect_fail 2 "not a multiple of the LUN block size" "$VDLOAD" write --bs 1000 --time 1 "$url"
expect_fail 2 "lies beyond" "$VDLOAD" write --range 60M:8M --time 1 "$url"
expect_fail 2 "unknown pattern" "$VDLOAD" read --pattern zigzag "$url"
expect_fail 1 "journal '$tmp/none': open failed" "$VDLOAD" verify --journal "$tmp/none" "$url"
expect_fail 1 "login failed" "$VDLOAD" read --time 1 "iscsi://127.0.0.1:$tgtd_port/iqn.2024-01.org.vdlvm.test:nosuch/1"

# rdwr keeps LBA n at byte n*512 of the file: locate must agree
[ "$("$VDLOAD" write --verify "$tmp/j0" --pattern seq --count 4 --bs 4k --quiet "$url" >/dev/null &&
     "$VDLOAD" locate "$tmp/disk.img" 3 20)" = "3 1536
20 10240" ] || fail "vdload locate disagrees with the rdwr layout"

vdload_roundtrip "$url" "$tmp/disk.img"
note "ok"
