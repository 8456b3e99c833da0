#!/bin/bash
# A full disk: an import that does not fit fails with one line saying there
# is no space left (exit 1), and the store stays intact: earlier models
# verify, export and mount byte-identical, and a later import works once
# space is back.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/small"
mount -t tmpfs -o size=48m tmpfs "$T/small" 2>/dev/null ||
	skip "cannot mount a tmpfs (not root?)"
export TCZFS_STORE="$T/small/store"
tczfs init >/dev/null
"$GEN" "$T/a.safetensors" --size-mb 8 --dtype bf16 --seed 1
"$GEN" "$T/b.safetensors" --size-mb 96 --dtype f32 --seed 2
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
expect_fail "an import larger than the disk" tczfs import "$T/b.safetensors" --name b --quiet
grep -qi "no space left" "$T/err" || fail "message: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 1 ] || fail "not one line: $(cat "$T/err")"
"$TCZFS" import "$T/b.safetensors" --name b --quiet >/dev/null 2>&1 && fail "import succeeded"
[ $? = 1 ] || fail "exit status of a full-disk import is not 1"
tczfs ls | grep -qx b && fail "a partial model is visible"
tczfs verify >"$T/v" || fail "verify after a full disk: $(cat "$T/v")"
tczfs export a -o "$T/a.out"
cmp -s "$T/a.safetensors" "$T/a.out" || fail "a is damaged"
rm -f "$T/a.out"
M="$T/mnt"
mount_store "$M" --cache-mb 16
cmp -s "$T/a.safetensors" "$M/a/model.safetensors" || fail "a through the mount"
umount_store "$M"
# space again: the failed import's leftovers go, a new import works
rm -f "$T/small/filler"
tczfs import "$T/a.safetensors" --name a2 --quiet >/dev/null || fail "import after the full disk"
tczfs verify >/dev/null || fail "verify at the end"
echo ok
