#!/bin/bash
# ONNX Runtime (onnxruntime-node, CPU) runs models from the mount: silero
# VAD (../shared/models) on a fixed 512-sample input, zero state, sr 16000,
# and an MLP the test writes with python3-onnx with its weights in one
# external .data file and again as typed float_data; outputs are bit for
# bit those of the run on the source file. A --bits 8 import of silero
# runs too, and the output difference is printed.
# SKIP without python3-onnx or when npm cannot install onnxruntime-node.
. "$(dirname "$0")/lib.sh"

"$PY" -c 'import onnx' 2>/dev/null || skip "python3-onnx is not installed"
NODE_DIR=${TCZ_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tczfs/node}
"$SRC_ROOT/tests/tools/node-deps" "$NODE_DIR" || skip "onnxruntime-node is not available"
RUN="$SRC_ROOT/tests/tools/ort_run.mjs"

mkdir -p "$T/mlp_ext" "$T/mlp_typed"
"$PY" - "$T" <<'PY'
import json, os, sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
out = sys.argv[1]
rng = np.random.default_rng(5)
w1 = rng.standard_normal((64, 128)).astype(np.float32) / 8
b1 = rng.standard_normal(128).astype(np.float32) / 10
w2 = rng.standard_normal((128, 16)).astype(np.float32) / 11
b2 = rng.standard_normal(16).astype(np.float32) / 10

def build(typed):
    inits = []
    for name, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        if typed:  # float_data instead of raw_data
            inits.append(helper.make_tensor(name, TensorProto.FLOAT, a.shape,
                                            a.flatten().tolist()))
        else:
            inits.append(numpy_helper.from_array(a, name))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]),
             helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]),
             helper.make_node("MatMul", ["h2", "w2"], ["y0"]),
             helper.make_node("Add", ["y0", "b2"], ["y"])]
    g = helper.make_graph(nodes, "mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)],
                             producer_name="tczfs-tests")

m = build(False)
onnx.save_model(m, os.path.join(out, "mlp_ext", "model.onnx"),
                save_as_external_data=True, all_tensors_to_one_file=True,
                location="weights.data", size_threshold=0)
onnx.save_model(build(True), os.path.join(out, "mlp_typed", "model.onnx"))
ext = onnx.load(os.path.join(out, "mlp_ext", "model.onnx"), load_external_data=False)
assert all(t.data_location == TensorProto.EXTERNAL for t in ext.graph.initializer)
typed = onnx.load(os.path.join(out, "mlp_typed", "model.onnx"))
assert all(len(t.float_data) and not t.raw_data for t in typed.graph.initializer)
x = rng.standard_normal(64).astype(np.float32)
json.dump({"x": {"type": "float32", "dims": [1, 64], "data": x.tolist()}},
          open(os.path.join(out, "mlp.json"), "w"))
r = np.random.default_rng(0)
json.dump({"input": {"type": "float32", "dims": [1, 512],
                     "data": (r.standard_normal(512) / 4).astype(np.float32).tolist()},
           "state": {"type": "float32", "dims": [2, 1, 128], "data": [0.0] * 256},
           "sr": {"type": "int64", "dims": [], "data": [16000]}},
          open(os.path.join(out, "silero.json"), "w"))
PY

tczfs init >/dev/null
tczfs import "$T/mlp_ext/model.onnx" --name mlp_ext --quiet >/dev/null
tczfs import "$T/mlp_typed/model.onnx" --name mlp_typed --quiet >/dev/null
silero="$MODELS/silero_vad_16k_op15.onnx"
have_silero=0
if [ -f "$silero" ]; then
	have_silero=1
	tczfs import "$silero" --name silero --quiet >/dev/null
	tczfs import "$silero" --name silero8 --bits 8 --quiet >/dev/null
	tczfs info silero8 | grep -q quant8 || fail "silero --bits 8 quantized nothing"
else
	echo "(no $silero: silero is left out)"
fi

M="$T/mnt"
mount_store "$M" --cache-mb 16
cmp -s "$M/mlp_ext/weights.data" "$T/mlp_ext/weights.data" || fail "weights.data differs"
cd "$NODE_DIR"
run() { # MODEL INPUTS OUT
	node "$RUN" "$1" "$2" >"$3" || fail "ONNX Runtime fails on $1"
}
for m in mlp_ext mlp_typed; do
	run "$T/$m/model.onnx" "$T/mlp.json" "$T/want.$m"
	run "$M/$m/model.onnx" "$T/mlp.json" "$T/got.$m"
	grep -q '"y":{"type":"float32","dims":\[1,16\]' "$T/want.$m" || fail "$m: no output y"
	cmp -s "$T/want.$m" "$T/got.$m" || fail "$m: outputs differ from the source's"
	echo "$m: ONNX Runtime output from the mount is bit-identical"
done
if [ "$have_silero" = 1 ]; then
	run "$silero" "$T/silero.json" "$T/want.silero"
	run "$M/silero/model.onnx" "$T/silero.json" "$T/got.silero"
	cmp -s "$T/want.silero" "$T/got.silero" || fail "silero: outputs differ from the source's"
	echo "silero: ONNX Runtime output and state from the mount are bit-identical"
	run "$M/silero8/model.onnx" "$T/silero.json" "$T/got.silero8"
	"$PY" - "$T/want.silero" "$T/got.silero8" <<'PY'
import json, sys
import numpy as np
a, b = (json.load(open(p)) for p in sys.argv[1:])
for k in ("output", "stateN"):
    x = np.frombuffer(bytes.fromhex(a[k]["hex"]), "<f4")
    y = np.frombuffer(bytes.fromhex(b[k]["hex"]), "<f4")
    assert x.shape == y.shape and np.isfinite(y).all(), k
    d = np.abs(x - y).max()
    rel = np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)
    print("silero --bits 8: %s max |difference| %.3g (of max |value| %.3g), "
          "relative %.3g" % (k, d, np.abs(x).max(), rel))
PY
fi
cd "$T"
umount_store "$M"
echo ok
