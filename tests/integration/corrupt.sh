#!/bin/bash
# A flipped byte in one stored chunk: verify reports it, export fails with
# an error (never wrong bytes), other models stay readable.
. "$(dirname "$0")/lib.sh"

tczfs init >/dev/null
"$GEN" "$T/a.safetensors" --size-mb 3 --seed 1
"$GEN" "$T/b.safetensors" --size-mb 3 --seed 2
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
tczfs verify >/dev/null || fail "verify before corruption"
"$CORRUPT" "$TCZFS_STORE" 3 >/dev/null
tczfs import "$T/b.safetensors" --name b --quiet >/dev/null

if tczfs verify >"$T/v" 2>&1; then fail "verify missed the corruption"; fi
grep -q "^BAD a: .*checksum mismatch" "$T/v" || fail "verify output: $(cat "$T/v")"
[ "$(grep -c '^BAD' "$T/v")" = 1 ] || fail "verify reported more than one problem"
if tczfs verify a >/dev/null; then fail "verify a passed"; fi
tczfs verify b >/dev/null || fail "verify b failed"

expect_fail "export of the corrupt model" tczfs export a -o "$T/a.out"
grep -q "corrupt" "$T/err" || fail "export message: $(cat "$T/err")"
# it names the damaged tensor (or file part), not a read window
grep -qE "tensor '[^']+' chunk [0-9]+|file '[^']+' part" "$T/err" ||
	fail "export does not name the damaged part: $(cat "$T/err")"
[ ! -e "$T/a.out" ] || fail "export left a file behind"
ls "$T"/a.out.* 2>/dev/null && fail "export left a temporary file"
tczfs export b -o "$T/b.out"
cmp -s "$T/b.safetensors" "$T/b.out" || fail "b is not intact"
tczfs rm a
tczfs verify >/dev/null || fail "verify after removing the corrupt model"
echo ok
