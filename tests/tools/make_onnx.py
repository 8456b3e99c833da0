#!/usr/bin/python3
"""Writes small ONNX models with python3-onnx into OUTDIR, each with the
listing tests/tools/onnx_tensors.py gives for it (NAME.json), and MANIFEST
naming them: the cases tests/unit/test_onnx.c checks the parser on.

Usage: make_onnx.py OUTDIR

Models: external data in one .data file (onnx.save_model with
save_as_external_data) and in two files (one in a subdirectory, with a gap,
an entry without offset and one without length); typed float_data /
double_data / int32_data / uint64_data instead of raw_data; int64_data;
sparse initializers and a sparse Constant; nested If / Loop / Scan
subgraphs holding constants; unnamed and duplicate-named tensors,
TENSORS attributes, non-weight types (STRING, COMPLEX64), an empty
tensor; a model-local function and a training graph."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_tensors  # noqa: E402

OUT = sys.argv[1]
rng = np.random.default_rng(12)
made = []


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def vi(name, et=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, et, shape)


def model(graph, **kw):
    kw.setdefault("opset_imports", [helper.make_opsetid("", 15)])
    m = helper.make_model(graph, producer_name="tczfs-tests",
                          producer_version="1", **kw)
    m.ir_version = 8
    return m


def save(name, m, **kw):
    path = os.path.join(OUT, name + ".onnx")
    onnx.save_model(m, path, **kw)
    made.append(name)


def const(name, t, out=None):
    return helper.make_node("Constant", [], [out or name + "_out"], name=name,
                            value=t)


os.makedirs(OUT, exist_ok=True)

# --- external data, one file: the library's own writer ---------------------
inits = [numpy_helper.from_array(f32(16, 8), "w1"),
         numpy_helper.from_array(f32(8), "b1"),
         numpy_helper.from_array(f32(4, 16).astype(np.float16), "w2"),
         numpy_helper.from_array(np.arange(6, dtype=np.int64), "idx")]
g = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["y"])],
                      "ext_one", [vi("x", shape=[1, 16])],
                      [vi("y", shape=[1, 8])], inits)
save("ext_one", model(g), save_as_external_data=True,
     all_tensors_to_one_file=True, location="ext_one.data", size_threshold=0)

# --- external data, two files, written by hand --------------------------
os.makedirs(os.path.join(OUT, "weights"), exist_ok=True)
arrays = {"a": f32(32, 4), "b": f32(7), "c": f32(3, 3).astype(np.float64),
          "d": np.array([[1, -2], [3, -4]], dtype=np.int32)}
files = {"ext_two_a.data": ["a", "b"], "weights/ext_two_b.data": ["c", "d"]}
inits = []
for loc, names in files.items():
    with open(os.path.join(OUT, loc), "wb") as fh:
        fh.write(b"HDR!")  # bytes no tensor covers
        for i, n in enumerate(names):
            t = numpy_helper.from_array(arrays[n], n)
            off = fh.tell()
            fh.write(t.raw_data)
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            ent = [("location", loc), ("offset", str(off))]
            if i + 1 < len(names):  # the last one reads to the end
                ent.append(("length", str(len(arrays[n].tobytes()))))
            for k, v in ent:
                e = t.external_data.add()
                e.key, e.value = k, v
            inits.append(t)
            fh.write(b"\0" * 3)  # a gap
        fh.seek(-3, 1)
        fh.truncate()
g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])],
                      "ext_two", [vi("x")], [vi("y")], inits)
save("ext_two", model(g))

# --- typed fields instead of raw_data -----------------------------------
inits = [
    helper.make_tensor("fd", TensorProto.FLOAT, [3, 5],
                       f32(15).tolist()),
    helper.make_tensor("dd", TensorProto.DOUBLE, [4],
                       [1.5, -2.25, 1e300, -0.0]),
    helper.make_tensor("h", TensorProto.FLOAT16, [3],
                       np.array([1, -2.5, 65504], np.float16)),
    helper.make_tensor("bf", TensorProto.BFLOAT16, [2, 2],
                       [1.0, -2.5, 3.0e10, 0.0]),
    helper.make_tensor("i8", TensorProto.INT8, [4], [-128, -1, 0, 127]),
    helper.make_tensor("u8", TensorProto.UINT8, [3], [0, 1, 255]),
    helper.make_tensor("i16", TensorProto.INT16, [2], [-32768, 32767]),
    helper.make_tensor("u16", TensorProto.UINT16, [2], [0, 65535]),
    helper.make_tensor("i32", TensorProto.INT32, [3],
                       [-2147483648, 0, 2147483647]),
    helper.make_tensor("u32", TensorProto.UINT32, [2], [1, 4294967295]),
    helper.make_tensor("u64", TensorProto.UINT64, [2],
                       [0, 18446744073709551615]),
    helper.make_tensor("bl", TensorProto.BOOL, [3], [True, False, True]),
]
g = helper.make_graph([const("cf", helper.make_tensor(
    "", TensorProto.FLOAT, [2], [0.5, -0.5]))], "typed", [],
    [vi("cf_out")], inits)
save("float_data", model(g))

# --- int64_data ---------------------------------------------------------------
inits = [helper.make_tensor("shape", TensorProto.INT64, [3],
                            [1, -1, 4096]),
         helper.make_tensor("big", TensorProto.INT64, [3],
                            [-9223372036854775808, 9223372036854775807, -5])]
g = helper.make_graph(
    [const("axes", helper.make_tensor("", TensorProto.INT64, [2], [0, -1]))],
    "int64", [], [vi("axes_out", TensorProto.INT64)], inits)
save("int64_data", model(g))

# --- sparse ---------------------------------------------------------------
sp1 = helper.make_sparse_tensor(
    numpy_helper.from_array(np.array([1.5, -2, 3], np.float32), "sp"),
    numpy_helper.from_array(np.array([1, 5, 11], np.int64)), [3, 4])
sp2 = helper.make_sparse_tensor(
    numpy_helper.from_array(np.array([7, 9], np.float32)),
    numpy_helper.from_array(np.array([[0, 1], [2, 3]], np.int64), "sp2_idx"),
    [4, 4])
spc = helper.make_sparse_tensor(
    numpy_helper.from_array(np.array([4.0], np.float32), "spc"),
    numpy_helper.from_array(np.array([2], np.int64), "spc_i"), [5])
g = helper.make_graph(
    [helper.make_node("Constant", [], ["spc_out"], name="sparse_const",
                      sparse_value=spc)],
    "sparse", [], [vi("spc_out")], [numpy_helper.from_array(f32(2), "dense")],
    sparse_initializer=[sp1, sp2])
save("sparse", model(g))

# --- nested subgraphs ---------------------------------------------------
inner_then = helper.make_graph(
    [const("deep_c", numpy_helper.from_array(f32(2, 2)), "d_out")],
    "inner_then", [], [vi("d_out")])
inner_else = helper.make_graph(
    [const("deep_e", numpy_helper.from_array(f32(2, 2)), "d_out")],
    "inner_else", [], [vi("d_out")])
body = helper.make_graph(
    [const("loop_c", numpy_helper.from_array(np.array(True))),
     helper.make_node("If", ["loop_c_out"], ["d_out"], name="inner_if",
                      then_branch=inner_then, else_branch=inner_else),
     helper.make_node("Identity", ["cond"], ["cond_out"])],
    "body", [vi("i", TensorProto.INT64, []), vi("cond", TensorProto.BOOL, [])],
    [vi("cond_out", TensorProto.BOOL, []), vi("d_out")],
    [numpy_helper.from_array(f32(3), "body_init")])
then_g = helper.make_graph(
    [const("then_c", numpy_helper.from_array(f32(5), "then_tensor"), "t_out"),
     helper.make_node("Loop", ["", "cond0"], ["t_loop"], name="loop",
                      body=body)],
    "then", [], [vi("t_out")])
else_g = helper.make_graph(
    [const("else_c", numpy_helper.from_array(f32(5)), "t_out")],
    "else", [], [vi("t_out")])
scan_body = helper.make_graph(
    [const("scan_c", numpy_helper.from_array(f32(1)), "s_out")],
    "scan_body", [vi("s_in")], [vi("s_out")])
g = helper.make_graph(
    [const("cond0", numpy_helper.from_array(np.array(True)), "cond0"),
     helper.make_node("If", ["cond0"], ["y"], name="top_if",
                      then_branch=then_g, else_branch=else_g),
     helper.make_node("Scan", ["y"], ["z"], name="scan", num_scan_inputs=1,
                      body=scan_body)],
    "nested", [], [vi("z")])
save("nested", model(g))

# --- unnamed, duplicate names, TENSORS, non-weight types ---------------------
dup_then = helper.make_graph(
    [const("", numpy_helper.from_array(f32(2), "same"), "o")],
    "dup_then", [], [vi("o")])
dup_else = helper.make_graph(
    [const("", numpy_helper.from_array(f32(2), "same"), "o")],
    "dup_else", [], [vi("o")])
custom = helper.make_node("Custom", [], ["cu"], domain="tczfs.test")
custom.attribute.append(helper.make_attribute(
    "tables", [numpy_helper.from_array(f32(2)),
               numpy_helper.from_array(np.arange(3, dtype=np.int8))]))
nodes = [
    const("", numpy_helper.from_array(f32(3)), "u0"),
    const("", numpy_helper.from_array(f32(3)), "u1"),
    helper.make_node("If", ["u0"], ["o"], then_branch=dup_then,
                     else_branch=dup_else),
    custom,
    helper.make_node("ConstantOfShape", ["u1"], ["cs"], name="cos",
                     value=numpy_helper.from_array(np.array([0], np.float32))),
    const("strings", helper.make_tensor("str", TensorProto.STRING, [2],
                                        [b"ab", b"c"])),
    const("cplx", helper.make_tensor("cx", TensorProto.COMPLEX64, [2],
                                     [1 + 2j, 3 - 1j])),
    const("empty", numpy_helper.from_array(np.zeros((0, 3), np.float32),
                                           "empty_t")),
    const("scalar", numpy_helper.from_array(np.array(2.5, np.float32))),
]
inits = [numpy_helper.from_array(f32(2), ""),
         numpy_helper.from_array(f32(2), "same"),
         numpy_helper.from_array(f32(2), "#1:value")]
g = helper.make_graph(nodes, "unnamed", [], [vi("o")], inits)
save("unnamed", model(g, opset_imports=[helper.make_opsetid("", 15),
                                        helper.make_opsetid("tczfs.test",
                                                            1)]))

# --- a model-local function and a training graph -------------------------
fn = helper.make_function(
    "tczfs.fn", "AddConst", ["x"], ["y"],
    [const("k", numpy_helper.from_array(f32(4))),
     helper.make_node("Add", ["x", "k_out"], ["y"])],
    [helper.make_opsetid("", 15)])
g = helper.make_graph([helper.make_node("AddConst", ["x"], ["y"],
                                        domain="tczfs.fn")],
                      "fn_main", [vi("x", shape=[4])], [vi("y", shape=[4])],
                      [numpy_helper.from_array(f32(4), "main_w")])
m = model(g, opset_imports=[helper.make_opsetid("", 15),
                            helper.make_opsetid("tczfs.fn", 1)],
          functions=[fn])
ti = m.training_info.add()
ti.initialization.CopyFrom(helper.make_graph(
    [], "init", [], [vi("main_w")],
    [numpy_helper.from_array(f32(4), "train_init")]))
save("function", m)

for name in made:
    onnx_tensors_json = os.path.join(OUT, name + ".json")
    doc = onnx_tensors.listing(os.path.join(OUT, name + ".onnx"))
    import json
    with open(onnx_tensors_json, "w") as fh:
        json.dump(doc, fh)
with open(os.path.join(OUT, "MANIFEST"), "w") as fh:
    fh.write("".join(n + "\n" for n in made))
