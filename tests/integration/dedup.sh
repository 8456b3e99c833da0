#!/bin/bash
# Two models sharing most tensors store the shared chunks once: the second
# costs less than 10 % of its size. rm releases only unshared chunks.
. "$(dirname "$0")/lib.sh"

used() { # bytes of pages in use in the store
	mdb_stat -e "$TCZFS_STORE" | awk '/Page size/ {p=$3} /Number of pages used/ {u=$5} END {print p*u}'
}
tczfs init >/dev/null
"$GEN" "$T/base.safetensors" --size-mb 16 --dtype bf16 --seed 5
# the "fine-tune": one tensor changed, the rest bit-identical
$PY - "$T/base.safetensors" "$T/ft.safetensors" <<'PY'
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
b = bytearray(open(src, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
s, e = h["model.layers.0.self_attn.q_proj.weight"]["data_offsets"]
for i in range(8 + n + s, 8 + n + e, 2):
    b[i] ^= 1
open(dst, "wb").write(b)
PY
tczfs import "$T/base.safetensors" --name base --quiet >/dev/null
u1=$(used)
tczfs import "$T/ft.safetensors" --name ft --quiet >/dev/null
u2=$(used)
size=$(stat -c %s "$T/ft.safetensors")
growth=$((u2 - u1))
echo "second model: $size bytes, store grew by $growth bytes"
[ $((growth * 10)) -lt "$size" ] || fail "shared chunks were stored again"
tczfs export ft -o "$T/ft.out"
cmp -s "$T/ft.safetensors" "$T/ft.out" || fail "ft differs"
tczfs rm base
tczfs export ft -o "$T/ft.out2"
cmp -s "$T/ft.safetensors" "$T/ft.out2" || fail "rm of base damaged ft"
tczfs verify >/dev/null || fail "verify after rm"
tczfs rm ft
[ "$(mdb_stat -s chunks "$TCZFS_STORE" | awk '/Entries/ {print $2}')" = 0 ] ||
	fail "chunks left after removing every model"
echo ok
