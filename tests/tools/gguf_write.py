#!/usr/bin/python3
"""GGUF v3 files for the tests, and an independent reader to check
tczfs's parser against.

  gguf_write.py convert SRC OUT [--quant q8_0|q4_0] [--alignment N]
      SRC is a .gguf (its KV metadata is kept) or a .safetensors file.
      --quant quantizes the 2-D F32/F16 tensors whose rows are a whole
      number of 32-element blocks (others stay as they are) with the
      published Q8_0 / Q4_0 block formats, and sets general.file_type
      (7 / 2) and general.quantization_version (2). --alignment sets
      general.alignment (default: the source's, else 32).
  gguf_write.py dump FILE
      prints what this reader finds, as JSON (version, alignment,
      data_offset, tensors in file order, KV types and values with
      arrays as {"type", "length", "first"}).
  gguf_write.py dequant FILE TENSOR OUT
      writes the tensor's values as little-endian float32 (F32, F16,
      BF16, Q8_0, Q4_0), dequantized with NumPy from the block formats.

Written from the GGUF specification (ggml docs/gguf.md) and the block
definitions (Q8_0: f16 d, 32 int8 q, x = q d; Q4_0: f16 d, 16 bytes,
element j < 16 in the low nibble of byte j, j + 16 in its high nibble,
x = (q - 8) d)."""
import json
import struct
import sys

import numpy as np

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
VTYPE_NAMES = ["uint8", "int8", "uint16", "int16", "uint32", "int32",
               "float32", "bool", "string", "array", "uint64", "int64",
               "float64"]
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
          F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}

# ggml types this tool writes or reads: id -> (name, block elems, bytes)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 8, 30
GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18),
        3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24),
        8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84),
        11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
        15: ("Q8_K", 256, 292), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
        26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
        30: ("BF16", 1, 2)}


# ---- writing -------------------------------------------------------------

def enc_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def enc_value(t, v):
    """Bytes of a value of type t; arrays are (elem_type, [items])."""
    if t == STRING:
        return enc_str(v)
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(
            enc_value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def enc_kv(key, t, v):
    return enc_str(key) + struct.pack("<I", t) + enc_value(t, v)


def enc_tensor_info(name, ggml_type, dims, offset):
    return (enc_str(name) + struct.pack("<I", len(dims)) +
            b"".join(struct.pack("<Q", d) for d in dims) +
            struct.pack("<IQ", ggml_type, offset))


def pad(n, a):
    return (a - n % a) % a


def write_gguf(path, kvs, tensors, alignment=32, version=3):
    """kvs: [(key, type, value)]; tensors: [(name, ggml_type, dims, bytes)]
    laid out in order, each padded with zeros to the alignment."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors),
                                          len(kvs)))
    for k, t, v in kvs:
        out += enc_kv(k, t, v)
    off = 0
    for name, gt, dims, data in tensors:
        out += enc_tensor_info(name, gt, dims, off)
        off += len(data) + pad(len(data), alignment)
    out += b"\0" * pad(len(out), alignment)
    for _, _, _, data in tensors:
        out += data + b"\0" * pad(len(data), alignment)
    with open(path, "wb") as f:
        f.write(out)


# ---- reading -------------------------------------------------------------

class Reader:
    def __init__(self, data):
        self.d = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.d):
            raise ValueError("truncated")
        b = self.d[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return self.take(self.unpack("<Q"))

    def value(self, t):
        if t == STRING:
            return self.string()
        if t == ARRAY:
            et = self.unpack("<I")
            n = self.unpack("<Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.unpack(SCALAR[t])


def read_gguf(data):
    r = Reader(data)
    if r.take(4) != b"GGUF":
        raise ValueError("bad magic")
    version = r.unpack("<I")
    nt = r.unpack("<Q")
    nk = r.unpack("<Q")
    kvs = []
    for _ in range(nk):
        k = r.string().decode()
        t = r.unpack("<I")
        kvs.append((k, t, r.value(t)))
    align = 32
    for k, t, v in kvs:
        if k == "general.alignment":
            align = v
    tensors = []
    for _ in range(nt):
        name = r.string().decode()
        nd = r.unpack("<I")
        dims = [r.unpack("<Q") for _ in range(nd)]
        gt = r.unpack("<I")
        off = r.unpack("<Q")
        tensors.append({"name": name, "type": gt, "dims": dims,
                        "offset": off})
    header_len = r.pos
    data_offset = header_len + pad(header_len, align)
    for t in tensors:
        _, be, bb = GGML[t["type"]]
        n = 1
        for d in t["dims"][1:]:
            n *= d
        t["nbytes"] = t["dims"][0] // be * bb * n
        a = data_offset + t["offset"]
        t["data"] = data[a:a + t["nbytes"]]
    return {"version": version, "alignment": align, "kvs": kvs,
            "tensors": tensors, "header_len": header_len,
            "data_offset": data_offset}


def read_safetensors(data):
    n = struct.unpack("<Q", data[:8])[0]
    h = json.loads(data[8:8 + n])
    base = 8 + n
    dt = {"F32": GGML_F32, "F16": GGML_F16, "BF16": GGML_BF16}
    tensors = []
    for name, e in h.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        dims = list(reversed(e["shape"])) or [1]
        tensors.append({"name": name, "type": dt[e["dtype"]], "dims": dims,
                        "offset": a, "data": data[base + a:base + b]})
    tensors.sort(key=lambda t: t["offset"])
    kvs = [("general.architecture", STRING, b"tczfs-test"),
           ("general.name", STRING, b"converted from safetensors")]
    return {"version": 3, "alignment": 32, "kvs": kvs, "tensors": tensors}


# ---- the block formats ---------------------------------------------------

def f32_values(t):
    if t["type"] == GGML_F32:
        return np.frombuffer(t["data"], "<f4").astype(np.float32)
    if t["type"] == GGML_F16:
        return np.frombuffer(t["data"], "<f2").astype(np.float32)
    if t["type"] == GGML_BF16:
        u = np.frombuffer(t["data"], "<u2").astype(np.uint32) << 16
        return u.view(np.float32)
    if t["type"] == GGML_Q8_0:
        b = np.frombuffer(t["data"], np.uint8).reshape(-1, 34)
        d = b[:, :2].copy().view("<f2").astype(np.float32)
        q = b[:, 2:].copy().view(np.int8).astype(np.float32)
        return (q * d).reshape(-1)
    if t["type"] == GGML_Q4_0:
        b = np.frombuffer(t["data"], np.uint8).reshape(-1, 18)
        d = b[:, :2].copy().view("<f2").astype(np.float32)
        qs = b[:, 2:]
        q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32) - 8
        return (q.astype(np.float32) * d).reshape(-1)
    raise ValueError("cannot dequantize type %d" % t["type"])


def round_away(x):
    """C roundf: halves away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def quant_q8_0(x):
    x = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        idn = np.where(d != 0, np.float32(1) / d, np.float32(0))
    q = round_away(x * idn).astype(np.int8)
    out = np.zeros((x.shape[0], 34), np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def quant_q4_0(x):
    x = x.astype(np.float32).reshape(-1, 32)
    # the signed value of largest magnitude (the first one on ties)
    i = np.abs(x).argmax(axis=1)
    mx = x[np.arange(x.shape[0]), i][:, None]
    d = mx / np.float32(-8)
    with np.errstate(divide="ignore"):
        idn = np.where(d != 0, np.float32(1) / d, np.float32(0))
    # (int8)(v + 8.5f) truncates toward zero; v * id is in [-8, 8]
    q = np.minimum(15, np.trunc(x * idn + np.float32(8.5))).astype(np.uint8)
    out = np.zeros((x.shape[0], 18), np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


# ---- commands ------------------------------------------------------------

def convert(src, out, quant=None, alignment=None):
    data = open(src, "rb").read()
    m = read_gguf(data) if data[:4] == b"GGUF" else read_safetensors(data)
    align = alignment or m["alignment"]
    kvs = [kv for kv in m["kvs"] if kv[0] not in (
        "general.alignment", "general.file_type",
        "general.quantization_version")]
    ftype = {None: None, "q8_0": 7, "q4_0": 2}[quant]
    tensors = []
    for t in m["tensors"]:
        gt, raw = t["type"], t["data"]
        if (quant and len(t["dims"]) == 2 and t["dims"][0] % 32 == 0 and
                gt in (GGML_F32, GGML_F16)):
            x = f32_values(t)
            if quant == "q8_0":
                gt, raw = GGML_Q8_0, quant_q8_0(x)
            else:
                gt, raw = GGML_Q4_0, quant_q4_0(x)
        tensors.append((t["name"], gt, t["dims"], raw))
    # keep the source's own order of KVs, the ones set here after it
    old = {k: (t, v) for k, t, v in m["kvs"]}
    if ftype is not None:
        kvs.append(("general.quantization_version", U32, 2))
        kvs.append(("general.file_type", U32, ftype))
    elif "general.file_type" in old:
        kvs.append(("general.file_type",) + old["general.file_type"])
    if align != 32 or "general.alignment" in old:
        kvs.append(("general.alignment", U32, align))
    write_gguf(out, kvs, tensors, align)


def jsonable(t, v):
    if t == STRING:
        return v.decode("utf-8", "replace")
    if t == ARRAY:
        et, items = v
        vals = [jsonable(et, x) for x in items]
        if len(vals) > 64:
            return {"type": VTYPE_NAMES[et], "length": len(vals),
                    "first": vals[:8]}
        return vals
    if t in (F32, F64):
        return v if np.isfinite(v) else None
    return v


def dump(path):
    m = read_gguf(open(path, "rb").read())
    print(json.dumps({
        "version": m["version"], "alignment": m["alignment"],
        "header_len": m["header_len"], "data_offset": m["data_offset"],
        "tensors": [{k: t[k] for k in ("name", "type", "dims", "offset",
                                       "nbytes")} for t in m["tensors"]],
        "kv_types": {k: VTYPE_NAMES[t] for k, t, v in m["kvs"]},
        "kv": {k: jsonable(t, v) for k, t, v in m["kvs"]},
    }))


def dequant(path, name, out):
    m = read_gguf(open(path, "rb").read())
    for t in m["tensors"]:
        if t["name"] == name:
            f32_values(t).astype("<f4").tofile(out)
            return
    raise SystemExit("no tensor %r" % name)


def main(argv):
    if len(argv) >= 3 and argv[0] == "convert":
        quant = alignment = None
        rest = argv[3:]
        while rest:
            if rest[0] == "--quant":
                quant = rest[1]
            elif rest[0] == "--alignment":
                alignment = int(rest[1])
            else:
                raise SystemExit("unknown option " + rest[0])
            rest = rest[2:]
        convert(argv[1], argv[2], quant, alignment)
    elif len(argv) == 2 and argv[0] == "dump":
        dump(argv[1])
    elif len(argv) == 4 and argv[0] == "dequant":
        dequant(argv[1], argv[2], argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
