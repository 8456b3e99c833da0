#!/bin/bash
# The command line: --help everywhere, usage errors exit 2, failures exit 1
# with a one-line message.
. "$(dirname "$0")/lib.sh"

tczfs --help | grep -q "usage: tczfs" || fail "tczfs --help"
for c in init import ls info export rm verify; do
	tczfs $c --help | grep -q "usage: tczfs $c" || fail "$c --help"
done
code() { "$@" >/dev/null 2>&1 && echo 0 || echo $?; }
[ "$(code tczfs frobnicate)" = 2 ] || fail "unknown command"
[ "$(code tczfs ls --bogus)" = 2 ] || fail "unknown option"
[ "$(code tczfs import)" = 2 ] || fail "import without SRC"
[ "$(code tczfs ls)" = 1 ] || fail "ls without a store"
expect_fail "ls without a store" tczfs ls
grep -q "tczfs init" "$T/err" || fail "no hint to init: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 1 ] || fail "not one line"
tczfs init | grep -q initialised || fail init
tczfs init | grep -q existing || fail "init twice"
[ "$(stat -c %a "$TCZFS_STORE")" = 700 ] || fail "store dir mode"
[ "$(stat -c %a "$TCZFS_STORE/data.mdb")" = 600 ] || fail "data file mode"
[ "$(code tczfs info nope)" = 1 ] || fail "info of a missing model"
[ "$(code tczfs rm nope)" = 1 ] || fail "rm of a missing model"
[ "$(code tczfs export nope -o "$T/x")" = 1 ] || fail "export of a missing model"
TCZFS_STORE= XDG_DATA_HOME="$T/xdg" "$TCZFS" init | grep -q "$T/xdg/tczfs" ||
	fail "XDG default"
tczfs --store "$T/other" init | grep -q "$T/other" || fail "--store"
"$GEN" "$T/m.safetensors" --size-mb 1
tczfs import "$T/m.safetensors" --quiet | grep -q "imported m:" || fail "default name"
tczfs ls | grep -qx m || fail "ls"
tczfs ls -l | grep -q "lossless" || fail "ls -l"
tczfs ls --json | $PY -c 'import json,sys; assert json.load(sys.stdin)[0]["name"] == "m"'
tczfs info m | grep -q "model.layers.0.self_attn.q_proj.weight" || fail info
tczfs info m --json | $PY -c 'import json,sys; d=json.load(sys.stdin); assert d["lossless"] and len(d["tensors"]) > 5'
expect_fail "export over an existing file" tczfs export m -o "$T/m.safetensors"
# more jobs than tensors, many times: no import may hang
for i in $(seq 40); do
	timeout 20 "$TCZFS" import "$SRC_ROOT/tests/corpus/safetensors/valid-scalar.safetensors" \
		--name "s$i" --jobs 8 --quiet >/dev/null || fail "import $i hung or failed"
done
echo ok
