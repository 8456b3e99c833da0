#!/bin/bash
# tczfs cat MODEL/PATH gives the bytes the mount gives, for every kind of
# file: merged and shard safetensors, auxiliary files, .npy of every dtype
# (BF16 widened), of lossless, quantized and TT models; bad paths get one
# line.
. "$(dirname "$0")/lib.sh"

tczfs init >/dev/null
"$GEN" "$T/dir" --size-mb 6 --dtype bf16 --shards 2 --seed 1
"$GEN" "$T/f16.safetensors" --size-mb 3 --dtype f16 --seed 2
tczfs import "$T/dir" --name sharded --quiet >/dev/null
tczfs import "$T/f16.safetensors" --name f16 --quiet >/dev/null
tczfs import "$T/f16.safetensors" --name q --bits 5 --quiet >/dev/null
$PY - "$T/lr.safetensors" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(0)
a = (rng.standard_normal((700, 9)) @ rng.standard_normal((9, 300))).astype(np.float32)
i = np.arange(10, dtype=np.int64)
h = {"w": {"dtype": "F32", "shape": [700, 300], "data_offsets": [0, a.nbytes]},
     "idx": {"dtype": "I64", "shape": [10], "data_offsets": [a.nbytes, a.nbytes + i.nbytes]}}
j = json.dumps(h).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(j)) + j + a.tobytes() + i.tobytes())
PY
tczfs import "$T/lr.safetensors" --name tt --tt --eps 1e-4 --quiet >/dev/null
tczfs info tt --json | grep -q '"codec": "tt"' || fail "no TT tensor"

M="$T/mnt"
mount_store "$M" --cache-mb 16
n=0
for model in sharded f16 q tt; do
	for p in $(cd "$M/$model" && find . -type f | sed 's|^\./||' | sort); do
		a=$(tczfs cat "$model/$p" | sha256sum | cut -d' ' -f1)
		b=$(sha "$M/$model/$p")
		[ "$a" = "$b" ] || fail "tczfs cat $model/$p differs from the mount"
		n=$((n + 1))
	done
done
echo "$n files: tczfs cat equals the mount"
tczfs cat sharded/model.safetensors -o "$T/out"
cmp -s "$T/out" "$M/sharded/model.safetensors" || fail "cat -o"
umount_store "$M"
# the shards are the source bytes
for s in "$T/dir"/*.safetensors; do
	tczfs cat "sharded/$(basename "$s")" | cmp -s - "$s" || fail "shard $s"
done
expect_fail "no such model" tczfs cat nope/model.safetensors
grep -q "no model named nope" "$T/err" || fail "message: $(cat "$T/err")"
expect_fail "no such file" tczfs cat f16/nope.bin
grep -q "has no file" "$T/err" || fail "message: $(cat "$T/err")"
expect_fail "a directory" tczfs cat f16/layers
grep -q "directory" "$T/err" || fail "message: $(cat "$T/err")"
expect_fail "a model directory" tczfs cat f16
expect_fail "no path" tczfs cat
echo ok
