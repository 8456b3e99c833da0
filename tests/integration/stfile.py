"""Test helper: safetensors files read with NumPy, independently of tczfs.

tensors(path) -> {name: (dtype, shape, raw bytes)}
array(dtype, shape, raw) -> NumPy array (BF16 widened to float32, as the
mount presents it)
"""
import json
import struct

import numpy as np

NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
      "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
      "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
      "BOOL": np.bool_}


def tensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"],
                b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items()}


def array(dtype, shape, raw):
    if dtype == "BF16":
        a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        a = np.frombuffer(raw, NP[dtype])
    return a.reshape(shape)
