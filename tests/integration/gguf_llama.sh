#!/bin/bash
# The real stories260K.gguf (../shared/models): imported after its
# safetensors twin it costs little (shared chunks); its model.gguf on the
# mount is byte-identical; its layers/*.npy equal the safetensors
# tensors; and llama.cpp (node-llama-cpp's prebuilt build) generates from
# the mount exactly the text it generates from the source file, for the
# F32 file and Q8_0 / Q4_0 versions the test writes.
# SKIP without the model files, or when npm cannot install node-llama-cpp.
. "$(dirname "$0")/lib.sh"

SRC="$MODELS/stories260K.gguf"
TWIN="$MODELS/stories260K.f32.safetensors"
[ -f "$SRC" ] && [ -f "$TWIN" ] || skip "no $SRC / $TWIN"
NODE_DIR=${TCZ_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tczfs/node}
"$SRC_ROOT/tests/tools/node-deps" "$NODE_DIR" || skip "node-llama-cpp is not available"
GENERATE="$SRC_ROOT/tests/tools/llama_generate.mjs"
W="$SRC_ROOT/tests/tools/gguf_write.py"
TOKENS=48
PROMPT="Once upon a time"

tczfs init >/dev/null
tczfs import "$TWIN" --name twin --quiet >/dev/null
s0=$(stat -c %s "$TCZFS_STORE/data.mdb")
u0=$(du -k "$TCZFS_STORE/data.mdb" | cut -f1)
tczfs import "$SRC" --name f32 --quiet >/dev/null
u1=$(du -k "$TCZFS_STORE/data.mdb" | cut -f1)
size=$(stat -c %s "$SRC")
grow=$(((u1 - u0) * 1024))
echo "store grew by $grow bytes for a $size-byte GGUF after its safetensors twin (file $s0 bytes before)"
[ $((grow * 10)) -lt "$size" ] || fail "the GGUF after its twin grew the store by $grow bytes (>= 10 % of $size)"

"$PY" "$W" convert "$SRC" "$T/q8.gguf" --quant q8_0
"$PY" "$W" convert "$SRC" "$T/q4.gguf" --quant q4_0
tczfs import "$T/q8.gguf" --quiet >/dev/null
tczfs import "$T/q4.gguf" --quiet >/dev/null

M="$T/mnt"
mount_store "$M" --cache-mb 16
[ "$(sha "$M/f32/model.gguf")" = "$(sha "$SRC")" ] || fail "f32: model.gguf differs"
[ "$(sha "$M/q8/model.gguf")" = "$(sha "$T/q8.gguf")" ] || fail "q8: model.gguf differs"
[ "$(sha "$M/q4/model.gguf")" = "$(sha "$T/q4.gguf")" ] || fail "q4: model.gguf differs"
echo "model.gguf byte-identical: stories260K, its Q8_0 and Q4_0 versions"

# layers/ of the GGUF = the safetensors twin's tensors (same names)
"$PY" - "$M/f32/layers" "$TWIN" <<'PY'
import os, sys
import numpy as np
import stfile
layers, twin = sys.argv[1:]
tensors = stfile.tensors(twin)
files = sorted(os.listdir(layers))
assert len(files) == len(tensors), (len(files), len(tensors))
for name, (dt, shape, raw) in tensors.items():
    want = stfile.array(dt, shape, raw)
    a = np.load(os.path.join(layers, name + ".npy"))
    assert a.dtype == want.dtype and a.shape == want.shape, (name, a.shape, want.shape)
    assert a.tobytes() == want.tobytes(), name
print("%d layers/*.npy equal stories260K.f32.safetensors" % len(files))
PY

# llama.cpp from the mount (mmap on) and from the source, greedy
cd "$NODE_DIR"
for m in f32 q8 q4; do
	src=$SRC
	[ "$m" = f32 ] || src="$T/$m.gguf"
	node "$GENERATE" "$src" "$PROMPT" "$TOKENS" >"$T/want.$m" ||
		fail "$m: llama.cpp fails on the source file"
	node "$GENERATE" "$M/$m/model.gguf" "$PROMPT" "$TOKENS" >"$T/got.$m" ||
		fail "$m: llama.cpp fails on the mount"
	[ "$(wc -w <"$T/want.$m")" -ge 10 ] || fail "$m: llama.cpp generated almost nothing"
	cmp -s "$T/want.$m" "$T/got.$m" ||
		fail "$m: generated text differs: '$(cat "$T/got.$m")' vs '$(cat "$T/want.$m")'"
	echo "$m: llama.cpp from the mount: $(head -c 60 "$T/got.$m")..."
done
cd "$T"
umount_store "$M"
echo ok
