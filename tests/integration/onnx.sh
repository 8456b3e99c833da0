#!/bin/bash
# ONNX models written here with python3-onnx (external data in one and in
# two files, one in a subdirectory; typed float_data / int32_data /
# int64_data; sparse, nested If / Loop / Scan, unnamed and duplicate
# names, functions) and the real silero model when ../shared/models has
# it: model.onnx and the data files on the mount are byte-identical to the
# sources; every layers/*.npy equals numpy_helper.to_array of the tensor
# (tests/tools/onnx_tensors.py names them as docs/formats.md says); info
# shows producer, IR version, opsets and counts; the malformed corpus is
# refused with its reasons (a location of ../x among them) and leaves the
# store byte for byte as it was. SKIP without python3-onnx.
. "$(dirname "$0")/lib.sh"

"$PY" -c 'import onnx' 2>/dev/null || skip "python3-onnx is not installed"
TOOLS="$SRC_ROOT/tests/tools"
CORPUS="$SRC_ROOT/tests/corpus/onnx"
tczfs init >/dev/null
"$PY" "$TOOLS/make_onnx.py" "$T/gen" >/dev/null
names=$(cat "$T/gen/MANIFEST")
for n in $names; do
	tczfs import "$T/gen/$n.onnx" --name "$n" --quiet >/dev/null
done
# a model directory holding an ONNX model and its data in a subdirectory
mkdir -p "$T/dir/weights"
cp "$T/gen/ext_two.onnx" "$T/dir/model.onnx"
cp "$T/gen/ext_two_a.data" "$T/dir/"
cp "$T/gen/weights/ext_two_b.data" "$T/dir/weights/"
echo '{"note": "kept"}' >"$T/dir/config.json"
tczfs import "$T/dir" --name indir --quiet >/dev/null
silero="$MODELS/silero_vad_16k_op15.onnx"
if [ -f "$silero" ]; then
	tczfs import "$silero" --name silero --quiet >/dev/null
	tczfs info silero >"$T/info"
	grep -q "^format    ONNX ir 8, from pytorch" "$T/info" ||
		fail "info: $(grep format "$T/info")"
	grep -q "opset ai.onnx 15; 177 tensors (15 initializers" "$T/info" ||
		fail "info counts: $(grep format "$T/info")"
else
	echo "(no $silero: the real model is left out)"
fi

M="$T/mnt"
mount_store "$M" --cache-mb 16
n=0
for m in $names; do
	cmp -s "$M/$m/model.onnx" "$T/gen/$m.onnx" || fail "$m: model.onnx differs"
	n=$((n + 1))
	for d in $(cd "$M/$m" && find . -path ./layers -prune -o -type f -print | grep -v '^./model.onnx$'); do
		cmp -s "$M/$m/$d" "$T/gen/$d" || fail "$m: data file $d differs"
		n=$((n + 1))
	done
done
for f in model.onnx ext_two_a.data weights/ext_two_b.data config.json; do
	cmp -s "$M/indir/$f" "$T/dir/$f" || fail "directory import: $f differs"
done
[ ! -f "$silero" ] || cmp -s "$M/silero/model.onnx" "$silero" || fail "silero differs"
echo "$n files byte-identical on the mount (and the directory import)"

"$PY" - "$M" "$T/gen" "$TOOLS/onnx_tensors.py" "$silero" $names <<'PY'
import hashlib, json, os, subprocess, sys
import numpy as np
mnt, gen, lister, silero = sys.argv[1:5]
models = [(n, os.path.join(gen, n + ".onnx")) for n in sys.argv[5:]]
if os.path.exists(silero):
    models.append(("silero", silero))

def npy_name(t):  # store/names.h
    b = t.encode()
    out = "".join("%%%02X" % c if c in (0x25, 0x2F) or c < 0x20 or c == 0x7F
                  else chr(c) for c in b)
    if t in (".", ".."):
        out = "%2E" + t[1:] if t == "." else "%2E."
    return out + ".npy"

total = 0
for name, path in models:
    listing = json.loads(subprocess.check_output([sys.executable, lister, path]))
    weights = [t for t in listing["tensors"] if t["dtype"] is not None]
    files = os.listdir(os.path.join(mnt, name, "layers"))
    assert len(files) == len(weights), (name, len(files), len(weights))
    for t in weights:
        a = np.load(os.path.join(mnt, name, "layers", npy_name(t["name"])))
        assert list(a.shape) == t["dims"], (name, t["name"], a.shape, t["dims"])
        if t["dtype"] == "BF16":
            raw = (a.view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        assert hashlib.sha256(raw).hexdigest() == t["sha256"], (name, t["name"])
        total += 1
print("%d layers/*.npy equal numpy_helper.to_array (%d models)" % (total, len(models)))
PY
umount_store "$M"

# precision tiering leaves alone a tensor whose values the file holds as
# varints (F16 in int32_data): its layers/ would disagree with model.onnx;
# a raw_data one next to it is re-quantized
"$PY" - "$T/f16.onnx" <<'PY'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(1)
a = rng.standard_normal((64, 128)).astype(np.float16)
v = helper.make_tensor("w_varint", TensorProto.FLOAT16, a.shape, a.flatten().tolist())
assert len(v.int32_data) == a.size and not v.raw_data
r = numpy_helper.from_array(rng.standard_normal((64, 128)).astype(np.float32), "w_raw")
g = helper.make_graph([helper.make_node("Identity", ["w_varint"], ["y"])], "g", [],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [64, 128])],
                      [v, r])
onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)]), sys.argv[1])
PY
tczfs import "$T/f16.onnx" --name f16 --quiet >/dev/null
tczfs tier policy f16 precision --max-error 0.5 >/dev/null
TCZFS_NOW=$(($(date +%s) + 1000000)) tczfs tier run f16 --quiet >/dev/null
tczfs info f16 | grep -q "^w_varint .* lossless " || fail "tiering quantized w_varint: $(tczfs info f16)"
tczfs info f16 | grep -q "^w_raw .* quant" || fail "tiering left w_raw: $(tczfs info f16)"
tczfs cat f16/model.onnx | cmp -s - "$T/f16.onnx" && fail "w_raw re-quantized but model.onnx unchanged"
echo "precision tiering re-quantized w_raw, left w_varint (held as varints) exact"

# the corpus: refused with the reason, the store byte for byte as it was
n=0 v=0
while IFS=$'\t' read -r f why; do
	if [ "$why" = ok ]; then
		v=$((v + 1))
		tczfs import "$CORPUS/$f" --name "valid$v" --quiet >/dev/null ||
			fail "$f: a valid file is refused"
		tczfs cat "valid$v/model.onnx" | cmp -s - "$CORPUS/$f" ||
			fail "$f: not byte-identical"
		continue
	fi
	before=$(sha "$TCZFS_STORE/data.mdb")
	expect_fail "$f" tczfs import "$CORPUS/$f" --name corpus --quiet
	[ "$(wc -l <"$T/err")" = 1 ] || fail "$f: more than one line: $(cat "$T/err")"
	grep -qF -- "$why" "$T/err" || fail "$f: expected '$why', got: $(cat "$T/err")"
	[ "$(sha "$TCZFS_STORE/data.mdb")" = "$before" ] || fail "$f changed the store"
	n=$((n + 1))
done <"$CORPUS/EXPECT"
grep -q '"location".*"\.\./x"\|\.\./x' "$CORPUS/ext-dotdot.onnx" ||
	fail "the corpus's ext-dotdot.onnx no longer names ../x"
tczfs verify >/dev/null || fail "store does not verify after the corpus"
echo "$n malformed ONNX files refused with their reason, $v valid ones exact"
echo ok
