#!/bin/bash
# Every malformed file of the corpus is refused with a one-line error that
# names the file, exit status non-zero, and the store stays byte-for-byte
# the same (model list and a checksum of the models and chunks tables).
. "$(dirname "$0")/lib.sh"

C="$SRC_ROOT/tests/corpus/safetensors"
tczfs init >/dev/null
"$GEN" "$T/base.safetensors" --size-mb 1
tczfs import "$T/base.safetensors" --name base --quiet >/dev/null

state() {
	tczfs ls
	mdb_dump -s models "$TCZFS_STORE" | sha256sum
	mdb_dump -s chunks "$TCZFS_STORE" | sha256sum
	mdb_dump -s refs "$TCZFS_STORE" | sha256sum
}
before=$(state)
n=0
while IFS=$'\t' read -r file want; do
	[ "$want" = ok ] && continue
	expect_fail "$file" tczfs import "$C/$file" --name bad
	[ "$(wc -l <"$T/err")" = 1 ] || fail "$file: error is not one line: $(cat "$T/err")"
	grep -qF "$file" "$T/err" || fail "$file: error does not name the file"
	grep -qF "$want" "$T/err" || fail "$file: error lacks '$want': $(cat "$T/err")"
	n=$((n + 1))
done <"$C/EXPECT"
[ "$(state)" = "$before" ] || fail "the store changed"
echo "refused $n malformed files, store unchanged"

# malformed .npy and directory sources
printf '\x93NUMPY\x01\x00\x10\x00{"descr": 1}    \n' >"$T/bad.npy"
expect_fail "bad npy" tczfs import "$T/bad.npy"
grep -q "bad.npy" "$T/err" || fail "npy error does not name the file"
mkdir "$T/dir"
cp "$C/valid-two.safetensors" "$T/dir/a.safetensors"
cp "$C/valid-two.safetensors" "$T/dir/b.safetensors"
expect_fail "duplicate tensors across shards" tczfs import "$T/dir"
grep -q "appears in both" "$T/err" || fail "dup shards: $(cat "$T/err")"
rm "$T/dir/b.safetensors"
echo '{"weight_map": {"a": "a.safetensors", "zz": "a.safetensors"}}' \
	>"$T/dir/model.safetensors.index.json"
expect_fail "index lists a missing tensor" tczfs import "$T/dir"
grep -q "'zz'" "$T/err" || fail "index: $(cat "$T/err")"
rm "$T/dir/model.safetensors.index.json"
echo x >"$T/dir/layers"
expect_fail "a file named layers" tczfs import "$T/dir"
grep -q "layers" "$T/err" || fail "layers: $(cat "$T/err")"
[ "$(state)" = "$before" ] || fail "the store changed"

# wrong options and names are refused before anything happens
expect_fail "bad bits" tczfs import "$T/base.safetensors" --bits 9
expect_fail "bad name" tczfs import "$T/base.safetensors" --name 'a/b'
expect_fail "reserved name" tczfs import "$T/base.safetensors" --name streams
expect_fail "existing name" tczfs import "$T/base.safetensors" --name base
expect_fail "bad regex" tczfs import "$T/base.safetensors" --bits 8 --include '('
expect_fail "two profiles" tczfs import "$T/base.safetensors" --bits 8 --tt
expect_fail "missing source" tczfs import "$T/nope.safetensors"
[ "$(state)" = "$before" ] || fail "the store changed"
echo ok
