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

# a FIFO, a socket or a device node is refused at once, not opened (a
# FIFO's open would wait for a writer forever)
mkfifo "$T/fifo.safetensors"
$PY -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
	"$T/sock.safetensors"
mknod "$T/dev.safetensors" c 1 3 2>/dev/null || true
mkdir "$T/sp" && mkfifo "$T/sp/config.json" && cp "$C/valid-two.safetensors" "$T/sp/"
for f in "$T/fifo.safetensors" "$T/sock.safetensors" "$T/dev.safetensors" \
	"$T/base.safetensors $T/fifo.safetensors"; do
	[ -e "${f%% *}" ] || continue
	# shellcheck disable=SC2086
	if timeout 10 "$TCZFS" import $f --name special >"$T/out" 2>"$T/err"; then
		fail "import of $f succeeded"
	fi
	rc=$?
	[ $rc != 124 ] || fail "import of $f hung"
	[ "$(wc -l <"$T/err")" = 1 ] || fail "$f: not one line: $(cat "$T/err")"
	grep -q "not a regular file" "$T/err" || fail "$f: $(cat "$T/err")"
done
# in a model directory, a FIFO is skipped with a note, never opened
timeout 10 "$TCZFS" import "$T/sp" --name sp --quiet >"$T/out" 2>"$T/err" ||
	fail "a directory holding a FIFO: $(cat "$T/err")"
grep -q "skipping config.json" "$T/err" || fail "no note about the FIFO: $(cat "$T/err")"
tczfs rm sp
[ "$(state)" = "$before" ] || fail "the store changed"
echo ok
