#!/bin/bash
# Permissions: tczfs.lock is created with data.mdb's mode (a store shared
# by a group is locked by all of it); a user who may write data.mdb but not
# tczfs.lock is refused as a writer, so pins are never ignored and a
# removal cannot free what a mount still reads; an unreadable store says
# permission denied.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip "needs root (to act as nobody)"
command -v setpriv >/dev/null || skip "setpriv is not installed"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
as_nobody true 2>/dev/null || skip "cannot run as nobody"
chmod 0711 "$T"
cp "$TCZFS" "$T/tczfs-bin" && chmod 0755 "$T/tczfs-bin"

tczfs init >/dev/null
"$GEN" "$T/x.safetensors" --size-mb 2 --seed 1
tczfs import "$T/x.safetensors" --name x --quiet >/dev/null
[ "$(stat -c %a "$TCZFS_STORE/tczfs.lock")" = 600 ] ||
	fail "tczfs.lock mode $(stat -c %a "$TCZFS_STORE/tczfs.lock"), data.mdb 600"

# a group-writable store: the lock file follows data.mdb
chmod 0660 "$TCZFS_STORE/data.mdb"
rm "$TCZFS_STORE/tczfs.lock"
tczfs ls >/dev/null
[ "$(stat -c %a "$TCZFS_STORE/tczfs.lock")" = 660 ] ||
	fail "tczfs.lock mode $(stat -c %a "$TCZFS_STORE/tczfs.lock"), data.mdb 660"

# nobody may write data.mdb, not tczfs.lock: refused as a writer
chmod 0777 "$TCZFS_STORE"
chmod 0666 "$TCZFS_STORE/data.mdb" "$TCZFS_STORE/lock.mdb"
M="$T/mnt"
mount_store "$M" --cache-mb 16
exec 7<"$M/x/model.safetensors"
chmod 0600 "$TCZFS_STORE/tczfs.lock" # (opens by root set it as data.mdb)
if as_nobody env TCZFS_STORE="$TCZFS_STORE" "$T/tczfs-bin" rm x 2>"$T/err"; then
	fail "a writer without the lock file removed x"
fi
grep -q "tczfs.lock: Permission denied" "$T/err" || fail "message: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 1 ] || fail "not one line: $(cat "$T/err")"
cat <&7 >"$T/x.read"
exec 7<&-
cmp -s "$T/x.read" "$T/x.safetensors" || fail "the open file stopped reading"
as_nobody env TCZFS_STORE="$TCZFS_STORE" "$T/tczfs-bin" ls >"$T/out" 2>"$T/err" ||
	fail "a reader without the lock file: $(cat "$T/err")"
grep -qx x "$T/out" || fail "ls as nobody: $(cat "$T/out")"
umount_store "$M"

# an unreadable store: permission denied, not "no store"
chmod 0700 "$TCZFS_STORE"
if as_nobody env TCZFS_STORE="$TCZFS_STORE" "$T/tczfs-bin" ls 2>"$T/err"; then
	fail "ls of an unreadable store succeeded"
fi
grep -q "Permission denied" "$T/err" || fail "message: $(cat "$T/err")"
tczfs verify >/dev/null || fail "verify"
echo ok
