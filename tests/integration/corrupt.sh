#!/bin/bash
# A flipped byte in one stored chunk: verify reports it, export fails with
# an error (never wrong bytes), other models stay readable, an import goes
# on, and importing the same bytes again heals the chunk.
. "$(dirname "$0")/lib.sh"

tczfs init >/dev/null
"$GEN" "$T/a.safetensors" --size-mb 3 --seed 1
"$GEN" "$T/b.safetensors" --size-mb 3 --seed 2
"$GEN" "$T/c.safetensors" --size-mb 3 --seed 3
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
tczfs import "$T/b.safetensors" --name b --quiet >/dev/null
tczfs verify >/dev/null || fail "verify before corruption"
# a chunk of a that b does not share (generated models share their
# constant norm tensors): the first in key order whose damage b survives
n=$(mdb_stat -s chunks "$TCZFS_STORE" | awk '/Entries/ {print $2}')
for i in $(seq 0 $((n - 1))); do
	"$CORRUPT" "$TCZFS_STORE" "$i" >/dev/null
	if ! tczfs verify a >/dev/null 2>&1 && tczfs verify b >/dev/null 2>&1; then
		break
	fi
	"$CORRUPT" "$TCZFS_STORE" "$i" >/dev/null # flip it back
done
tczfs verify a >/dev/null 2>&1 && fail "no chunk of a alone was found"
# an import while the store holds a damaged chunk
tczfs import "$T/c.safetensors" --name c --quiet >/dev/null

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
# the same bytes imported again replace the damaged copy: a reads right
tczfs import "$T/a.safetensors" --name a2 --quiet >/dev/null ||
	fail "importing a's bytes again failed"
tczfs verify >/dev/null || fail "the damaged chunk was not healed"
tczfs export a -o "$T/a.out"
cmp -s "$T/a.safetensors" "$T/a.out" || fail "a is not intact after the heal"
tczfs rm a
tczfs rm a2
tczfs verify >/dev/null || fail "verify after removing the models"
echo ok
