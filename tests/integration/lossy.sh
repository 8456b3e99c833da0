#!/bin/bash
# Lossy imports export valid safetensors files that NumPy reads; each
# tensor's error, computed independently in NumPy, equals the recorded one
# (within 1e-6) and --max-error bounds it.
. "$(dirname "$0")/lib.sh"

tczfs init >/dev/null
# (the real models: real_models.sh)
"$GEN" "$T/gen.safetensors" --size-mb 4 --dtype bf16 --seed 3
srcs="$T/gen.safetensors"
# exactly low-rank matrices: the one place TT must win under --max-error
$PY - "$T/lowrank.safetensors" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(0)
h, blobs, off = {}, [], 0
for i in range(4):
    a = (rng.standard_normal((512, 8)) @ rng.standard_normal((8, 384)) / 10).astype(np.float32)
    b = a.tobytes()
    h["w%d.weight" % i] = {"dtype": "F32", "shape": [512, 384], "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
j = json.dumps(h).encode()
j += b" " * (-len(j) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(j)) + j + b"".join(blobs))
PY
srcs="$srcs $T/lowrank.safetensors"
i=0
for f in $srcs; do
	for mode in "--bits 8" "--max-error 0.01" "--bits 3" "--tt --eps 0.05"; do
		i=$((i + 1))
		name=m$i
		tczfs import "$f" --name $name $mode --quiet >/dev/null 2>"$T/notes"
		case "$f $mode" in
		*gen.safetensors*--tt*) grep -q "not less than lossless" "$T/notes" ||
			fail "--tt on $f: no note about the lossless fallback" ;;
		esac
		case "$f $mode" in *lowrank*max-error*) lowrank_model=$name ;; esac
		tczfs export $name -o "$T/$name.safetensors"
		tczfs info $name --json >"$T/$name.json"
		$PY "$SRC_ROOT/tests/integration/checks.py" lossy "$f" \
			"$T/$name.safetensors" "$T/$name.json" "$mode"
	done
done
# TT was the smallest encoding meeting the bound for the low-rank model
[ -n "${lowrank_model:-}" ] || fail "no low-rank model"
tczfs info "$lowrank_model" --json | $PY -c '
import json, sys
d = json.load(sys.stdin)
assert all(t["codec"] == "tt" and t["ratio"] > 20 for t in d["tensors"]), d["tensors"]'
# --bits on a tensor with a NaN past its first chunk: stored lossless, and
# no chunk of the abandoned quantization is left behind
$PY - "$T/nan.safetensors" <<'PY'
import json, struct, sys
import numpy as np
a = np.random.default_rng(1).standard_normal((512, 1024)).astype(np.float32)
a.flat[300000] = np.nan
b = a.tobytes()
j = json.dumps({"w.weight": {"dtype": "F32", "shape": [512, 1024],
                             "data_offsets": [0, len(b)]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(j)) + j + b)
PY
tczfs import "$T/nan.safetensors" --name nan --bits 8 --quiet >/dev/null
tczfs info nan --json | $PY -c 'import json,sys; assert json.load(sys.stdin)["tensors"][0]["codec"] == "lossless"'
tczfs export nan -o "$T/nan.out"
cmp -s "$T/nan.safetensors" "$T/nan.out" || fail "the NaN tensor is not exact"
tczfs verify >/dev/null || fail "verify"
echo ok
