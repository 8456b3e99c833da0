#!/bin/bash
# GGUF models (generated here from a NumPy model, F32 and quantized Q8_0 /
# Q4_0, default and 64-byte alignment): the mount and tczfs export give
# the file back byte for byte (sha256 of the source); layers/*.npy hold
# the values an independent NumPy reader finds (plain types as stored,
# block types dequantized from the published block formats); info shows
# the file's metadata; every malformed file of the corpus is refused with
# its one-line reason and leaves the store as it was.
. "$(dirname "$0")/lib.sh"

W="$SRC_ROOT/tests/tools/gguf_write.py"
CORPUS="$SRC_ROOT/tests/corpus/gguf"
tczfs init >/dev/null
"$GEN" "$T/src.safetensors" --size-mb 2 --dtype f32 --hidden 128 --seed 3
"$PY" "$W" convert "$T/src.safetensors" "$T/f32.gguf"
"$PY" "$W" convert "$T/src.safetensors" "$T/q8.gguf" --quant q8_0
"$PY" "$W" convert "$T/src.safetensors" "$T/q4.gguf" --quant q4_0 --alignment 64
for m in f32 q8 q4; do
	tczfs import "$T/$m.gguf" --quiet >/dev/null
done

# what the metadata says
tczfs info q4 >"$T/info"
grep -q "^format    GGUF v3" "$T/info" || fail "info: no GGUF line: $(cat "$T/info")"
grep -q "Q4_0 x" "$T/info" || fail "info: no Q4_0 count"
grep -q "Q4_0 .*blockq" "$T/info" || fail "info: Q4_0 tensors are not blockq"
grep -q "profile   lossless (lossless)" "$T/info" ||
	fail "a quantized GGUF stored exactly is lossless"
tczfs info q4 --json >"$T/q4.json"
"$PY" - "$T/q4.json" "$T/q4.gguf" "$W" <<'PY'
import json, subprocess, sys
info = json.load(open(sys.argv[1]))
dump = json.loads(subprocess.check_output([sys.executable, sys.argv[3], "dump", sys.argv[2]]))
fmt = info["format"]["gguf"]
assert fmt["alignment"] == 64 == dump["alignment"], fmt["alignment"]
assert fmt["kv"]["general.file_type"] == 2, fmt["kv"].get("general.file_type")
for k, v in dump["kv"].items():
    assert k in fmt["kv"], k
NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 8: "Q8_0", 30: "BF16"}  # ggml ids
for t in dump["tensors"]:
    t["type"] = NAMES[t["type"]]
types = {}
for t in dump["tensors"]:
    types[t["type"]] = types.get(t["type"], 0) + 1
assert fmt["types"] == types, (fmt["types"], types)
byname = {t["name"]: t for t in info["tensors"]}
for t in dump["tensors"]:
    mine = byname[t["name"]]
    shape = list(reversed(t["dims"]))
    if t["type"] in ("Q8_0", "Q4_0"):
        assert mine["ggml_type"] == t["type"] and mine["logical_shape"] == shape, mine
        assert mine["codec"] == "blockq", mine
    else:
        assert mine["shape"] == shape, (mine, t)
print("info matches the independent reader")
PY

M="$T/mnt"
mount_store "$M" --cache-mb 16
for m in f32 q8 q4; do
	[ "$(sha "$M/$m/model.gguf")" = "$(sha "$T/$m.gguf")" ] ||
		fail "$m: the mounted model.gguf differs from the source"
	tczfs export "$m" -o "$T/$m.out.gguf"
	cmp -s "$T/$m.out.gguf" "$T/$m.gguf" || fail "$m: export differs"
done
echo "model.gguf byte-identical (mount and export) for F32, Q8_0, Q4_0/align 64"

# layers/: NumPy's reading of the GGUF file, tensor by tensor
"$PY" - "$M" "$T" "$W" <<'PY'
import json, os, subprocess, sys
import numpy as np
mnt, tmp, w = sys.argv[1:]
n = 0
for m in ("f32", "q8", "q4"):
    src = os.path.join(tmp, m + ".gguf")
    dump = json.loads(subprocess.check_output([sys.executable, w, "dump", src]))
    NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 8: "Q8_0", 30: "BF16"}  # ggml ids
    for t in dump["tensors"]:
        t["type"] = NAMES[t["type"]]
    files = set(os.listdir(os.path.join(mnt, m, "layers")))
    assert len(files) == len(dump["tensors"]), (m, len(files))
    for t in dump["tensors"]:
        a = np.load(os.path.join(mnt, m, "layers", t["name"] + ".npy"))
        shape = tuple(reversed(t["dims"]))
        out = os.path.join(tmp, "dq.f32")
        subprocess.check_call([sys.executable, w, "dequant", src, t["name"], out])
        want = np.fromfile(out, dtype="<f4").reshape(shape)
        if t["type"] == "F32":
            assert a.dtype == np.float32
        elif t["type"] == "F16":
            assert a.dtype == np.float16
            a = a.astype(np.float32)
        else:
            assert a.dtype == np.float32, (t["name"], a.dtype)
        assert a.shape == shape, (t["name"], a.shape, shape)
        assert np.array_equal(a.view(np.uint32), want.view(np.uint32)), t["name"]
        n += 1
print("%d layers/*.npy equal NumPy's values" % n)
PY
umount_store "$M"

# the corpus: refused, one line naming the problem, store unchanged
n=0 v=0
while IFS=$'\t' read -r f why; do
	if [ "$why" = ok ]; then # valid: imported, and comes back exact
		v=$((v + 1))
		tczfs import "$CORPUS/$f" --name "valid$v" --quiet >/dev/null ||
			fail "$f: a valid file is refused"
		tczfs cat "valid$v/model.gguf" | cmp -s - "$CORPUS/$f" ||
			fail "$f: not byte-identical"
		continue
	fi
	before=$(tczfs ls | sort | sha256sum)
	expect_fail "$f" tczfs import "$CORPUS/$f" --name corpus --quiet
	[ "$(wc -l <"$T/err")" = 1 ] || fail "$f: more than one line: $(cat "$T/err")"
	grep -qF -- "$why" "$T/err" || fail "$f: expected '$why', got: $(cat "$T/err")"
	[ "$(tczfs ls | sort | sha256sum)" = "$before" ] || fail "$f changed the store"
	n=$((n + 1))
done <"$CORPUS/EXPECT"
tczfs verify >/dev/null || fail "store does not verify after the corpus"
echo "$n malformed GGUF files refused with their reason, $v valid ones exact"
echo ok
