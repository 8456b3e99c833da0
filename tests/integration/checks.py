"""Test helper: independent checks of what tczfs gives back, with NumPy.

python3 checks.py npy MODEL_DIR SRC INFO_JSON
    every layers/*.npy of a mounted model equals the source tensor (plain
    and mmap'd), or for a lossy tensor has exactly its recorded error
python3 checks.py lossy SRC DECODED INFO_JSON MODE
    an exported lossy model: every tensor's relative and max error,
    computed here, equals the recorded one; MODE's bound holds
"""
import json
import os
import sys

import numpy as np

from stfile import array, tensors


def npy_name(name):
    return name.replace("%", "%25").replace("/", "%2F") + ".npy"


def check_npy(mdir, src, info_path):
    rec = {t["name"]: t for t in json.load(open(info_path))["tensors"]}
    files = ([os.path.join(src, f) for f in sorted(os.listdir(src))
              if f.endswith(".safetensors")] if os.path.isdir(src) else [src])
    n = 0
    for path in files:
        for name, (dt, shape, raw) in tensors(path).items():
            ref = array(dt, shape, raw)
            for mm in (None, "r"):
                a = np.load(os.path.join(mdir, "layers", npy_name(name)),
                            mmap_mode=mm)
                assert a.shape == ref.shape and a.dtype == ref.dtype, \
                    (name, a.dtype, ref.dtype)
                if rec[name]["codec"] == "lossless":
                    assert np.array_equal(a, ref, equal_nan=True), name
                else:
                    r64, a64 = ref.astype(np.float64), np.asarray(a, np.float64)
                    rel = np.linalg.norm(r64 - a64) / np.linalg.norm(r64)
                    assert abs(rel - rec[name]["rel_error"]) <= 1e-6, (name, rel)
            n += 1
    print("%s: %d .npy files match" % (os.path.basename(mdir), n))


def load(path):
    return {k: (dt, shape, array(dt, shape, raw).astype(np.float64).ravel())
            for k, (dt, shape, raw) in tensors(path).items()}


def check_lossy(src_path, dec_path, info_path, mode):
    src, dec = load(src_path), load(dec_path)
    info = {t["name"]: t for t in json.load(open(info_path))["tensors"]}
    assert src.keys() == dec.keys()
    lossy = 0
    err2 = ref2 = 0.0
    for k, (dt, shape, a) in src.items():
        dt2, shape2, b = dec[k]
        assert (dt, shape) == (dt2, shape2), k
        rec = info[k]
        ref = np.linalg.norm(a)
        rel = np.linalg.norm(a - b) / ref if ref > 0 else 0.0
        mx = np.max(np.abs(a - b)) if a.size else 0.0
        if rec["codec"] == "lossless":
            assert rel == 0 and mx == 0, (k, rel)
            continue
        lossy += 1
        err2 += float(np.sum((a - b) ** 2))
        ref2 += float(np.sum(a * a))
        assert abs(rel - rec["rel_error"]) <= 1e-6, (k, rel, rec["rel_error"])
        assert abs(mx - rec["max_abs_error"]) <= 1e-6 * max(1, mx), (k, mx)
        if mode.startswith("--max-error"):
            assert rel <= float(mode.split()[1]), (k, rel)
        if mode == "--bits 8":
            assert rel < 0.02, (k, rel)  # a few outlier-heavy tensors pass 1 %
    if mode.startswith("--tt"):
        # near full-rank weights: TT would be larger than the exact
        # encoding, so --tt keeps it only where it is smaller
        for k, rec in info.items():
            if rec["codec"] == "tt":
                assert rec["ratio"] > 1.0, (k, rec["ratio"])
        if "lowrank" in src_path:
            assert lossy == len(src), "the low-rank tensors were not stored as TT"
    else:
        assert lossy > 0, "nothing was stored lossy"
    if mode == "--bits 8":  # the weights' relative Frobenius error, together
        assert (err2 / ref2) ** 0.5 < 0.01, (err2 / ref2) ** 0.5
    print("%s %s: %d lossy tensors match their recorded errors"
          % (os.path.basename(src_path), mode, lossy))


if __name__ == "__main__":
    if sys.argv[1] == "npy":
        check_npy(*sys.argv[2:5])
    elif sys.argv[1] == "lossy":
        check_lossy(*sys.argv[2:6])
    else:
        sys.exit("usage: checks.py npy|lossy ...")
