#!/usr/bin/python3
"""Lists every tensor of an ONNX model as python3-onnx reads it, as JSON:
one entry per TensorProto, in the order tczfs's parser (store/onnx.c)
lists them, with the names it gives them (docs/draft-onnx.md), the type,
the dims, where the tensor sits, and the sha256 of the little-endian bytes
of numpy_helper.to_array (BF16 narrowed back from the float32 that onnx
returns). tests/unit/test_onnx.c compares its parse against this.

Usage: onnx_tensors.py MODEL.onnx [OUT.json]

The order is the serialization order of the protobuf library (fields by
number, repeated fields in order), which is the file order of any file it
wrote: in a graph the nodes (their attributes: t, g, tensors, graphs,
sparse_tensor, sparse_tensors), then initializers, then sparse
initializers; in the model the graph, training_info, functions."""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

# ONNX type -> tczfs dtype name (None: not a weight tensor)
TCZ = {1: "F32", 2: "U8", 3: "I8", 4: "U16", 5: "I16", 6: "I32", 7: "I64",
       9: "BOOL", 10: "F16", 11: "F64", 12: "U32", 13: "U64", 16: "BF16"}
DATA_FIELDS = ["raw_data", "float_data", "int32_data", "string_data",
               "int64_data", "double_data", "uint64_data"]


def le_bytes(t):
    a = numpy_helper.to_array(t)
    if t.data_type == TensorProto.BFLOAT16:
        return (np.ascontiguousarray(a, dtype="<f4").view("<u4") >> 16
                ).astype("<u2").tobytes()
    return np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


class Walker:
    def __init__(self):
        self.out = []  # (candidate name, TensorProto, info)

    def tensor(self, t, cand, where, part, depth, fn, tr):
        self.out.append((cand, t, {"where": where, "part": part,
                                   "depth": depth, "in_function": fn,
                                   "in_training": tr}))

    def sparse(self, s, cand, where, depth, fn, tr):
        base = s.values.name or cand
        if s.HasField("values"):
            self.tensor(s.values, base, where, "sparse_values", depth, fn, tr)
        if s.HasField("indices"):
            self.tensor(s.indices, base + ":indices", where,
                        "sparse_indices", depth, fn, tr)

    def attribute(self, a, place, nodeid, constant, depth, fn, tr):
        prefix = place + nodeid + ":" + a.name
        if a.HasField("t"):
            w = "constant" if constant and a.name == "value" else "attribute"
            self.tensor(a.t, prefix, w, "dense", depth, fn, tr)
        if a.HasField("g"):
            self.graph(a.g, prefix + "/", depth + 1, fn, tr)
        for k, t in enumerate(a.tensors):
            self.tensor(t, "%s[%d]" % (prefix, k), "attribute", "dense",
                        depth, fn, tr)
        for k, g in enumerate(a.graphs):
            self.graph(g, "%s[%d]/" % (prefix, k), depth + 1, fn, tr)
        if a.HasField("sparse_tensor"):
            w = ("constant" if constant and a.name == "sparse_value"
                 else "attribute")
            self.sparse(a.sparse_tensor, prefix, w, depth, fn, tr)
        for k, s in enumerate(a.sparse_tensors):
            self.sparse(s, "%s[%d]" % (prefix, k), "attribute", depth, fn,
                        tr)

    def node(self, n, idx, place, depth, fn, tr):
        nodeid = n.name or "#%d" % idx
        constant = n.op_type == "Constant" and n.domain in ("", "ai.onnx")
        for a in n.attribute:
            self.attribute(a, place, nodeid, constant, depth, fn, tr)

    def graph(self, g, place, depth, fn, tr):
        for i, n in enumerate(g.node):
            self.node(n, i, place, depth, fn, tr)
        for i, t in enumerate(g.initializer):
            self.tensor(t, "%sinitializer[%d]" % (place, i), "initializer",
                        "dense", depth, fn, tr)
        for i, s in enumerate(g.sparse_initializer):
            self.sparse(s, "%ssparse_initializer[%d]" % (place, i),
                        "sparse_init", depth, fn, tr)

    def model(self, m):
        self.graph(m.graph, "", 0, False, False)
        for k, ti in enumerate(m.training_info):
            for nm in ("initialization", "algorithm"):
                if ti.HasField(nm):
                    self.graph(getattr(ti, nm),
                               "training_info[%d].%s/" % (k, nm), 0, False,
                               True)
        for k, f in enumerate(m.functions):
            if f.name:
                place = "function:%s%s/" % (
                    f.domain + ":" if f.domain else "", f.name)
            else:
                place = "function[%d]/" % k
            for i, n in enumerate(f.node):
                self.node(n, i, place, 0, True, False)
            for a in getattr(f, "attribute_proto", []):
                self.attribute(a, place, "default", False, 0, True, False)


def unique_names(entries):
    """TensorProto names first (the first of duplicates keeps it), then
    the others in order: the candidate, or it with ~2, ~3, ..."""
    names, bases, out = set(), {}, [None] * len(entries)
    for i, (cand, t, _) in enumerate(entries):
        if t.name and t.name not in names:
            names.add(t.name)
            out[i] = t.name
    for i, (cand, t, _) in enumerate(entries):
        if out[i] is not None:
            continue
        base = t.name or cand
        if base not in bases and base not in names:
            name, k = base, 1
        else:
            k = bases.get(base, 1)
            while True:
                k += 1
                name = "%s~%d" % (base, k)
                if name not in names:
                    break
        bases[base] = k
        names.add(name)
        out[i] = name
    return out


def listing(path):
    plain = onnx.load(path, load_external_data=False)
    full = onnx.load(path)
    wp, wf = Walker(), Walker()
    wp.model(plain)
    wf.model(full)
    assert len(wp.out) == len(wf.out)
    names = unique_names(wp.out)
    res = []
    for name, (cand, t, info), (_, tf, _) in zip(names, wp.out, wf.out):
        e = {"name": name, "proto_name": t.name, "onnx_type": t.data_type,
             "dtype": TCZ.get(t.data_type), "dims": list(t.dims)}
        e.update(info)
        if t.data_location == TensorProto.EXTERNAL:
            e["field"] = "external"
            kv = {x.key: x.value for x in t.external_data}
            e["location"] = kv.get("location")
            e["offset"] = int(kv.get("offset", "0"))
        else:
            e["field"] = next((f for f in DATA_FIELDS
                               if (f == "raw_data" and t.HasField(f)) or
                               (f != "raw_data" and len(getattr(t, f)))),
                              None)
        if e["dtype"] is not None:
            e["sha256"] = hashlib.sha256(le_bytes(tf)).hexdigest()
        res.append(e)
    m = plain
    return {"ir_version": m.ir_version, "producer_name": m.producer_name,
            "producer_version": m.producer_version,
            "opsets": [[o.domain, o.version] for o in m.opset_import],
            "tensors": res}


def main():
    doc = listing(sys.argv[1])
    tensors = doc.pop("tensors")
    text = json.dumps(doc)[:-1] + ', "tensors": [\n' + ",\n".join(
        json.dumps(t) for t in tensors) + "\n]}\n"
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
