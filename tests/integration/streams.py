"""Test helper of stream.sh: frames to push and independent checks, NumPy.

python3 streams.py uniform OUT FRAMES DIM SEED
    float32 frames in [-1, 1) whose every group of 64 reaches 1.0 (or -1.0)
    in every frame (no drift), raw little-endian
python3 streams.py drift OUT
    the hand-built drift frames (64 values, one group), raw; prints the
    expected segment starts
python3 streams.py err PUSHED DECODED DIM BOUND
    max over frames of max|v - v'| / max|v| must be below BOUND; prints it
python3 streams.py pattern DECODED DIM FIRST
    every frame is stream_append's frame of its index (8-bit tolerance),
    whole; prints the frame count
"""
import sys

import numpy as np


def uniform(out, frames, dim, seed):
    rng = np.random.default_rng(seed)
    v = rng.uniform(-1, 1, (frames, dim)).astype("<f4")
    v[:, ::64] = np.where(rng.integers(0, 2, (frames, (dim + 63) // 64)), 1.0, -1.0)
    v.tofile(out)


def drift(out):
    # SPEC 6 at 8 bits: the opening frame's group max m gives the scale
    # f16(m / 127) and the bound f16(m / 127) * 127 * (1 + 26 / 256);
    # a frame whose max passes it opens a new segment
    def bound(m):
        s = float(np.float16(np.float32(m) / np.float32(127)))
        return s * 127 * (1 + 26 / 256)

    def at_or_below(b):
        f = np.float32(b)
        return f if float(f) <= b else np.nextafter(f, np.float32(0))

    def above(b):
        return np.nextafter(at_or_below(b), np.float32(10))

    maxima, starts = [], []
    m0 = np.float32(1.0)
    maxima += [m0, at_or_below(bound(m0)), np.float32(0.5)]   # one segment
    starts.append(0)
    m1 = above(bound(m0))                                      # drifts
    starts.append(len(maxima))
    maxima += [m1, np.float32(0.01), at_or_below(bound(m1))]
    m2 = above(bound(m1))                                      # drifts again
    starts.append(len(maxima))
    maxima += [m2, -m2]
    starts.append(len(maxima))
    maxima += [np.float32(4.0), np.float32(0.25)]              # and again
    rows = []
    for k, m in enumerate(maxima):
        r = np.linspace(-0.1, 0.1, 64, dtype=np.float32) * abs(m)
        r[k % 64] = m
        rows.append(r)
    np.array(rows, dtype="<f4").tofile(out)
    print(" ".join(map(str, starts)))


def err(pushed, decoded, dim, bound):
    a = np.fromfile(pushed, "<f4").reshape(-1, dim).astype(np.float64)
    b = np.fromfile(decoded, "<f4").reshape(-1, dim).astype(np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    e = (np.abs(a - b).max(axis=1) / np.abs(a).max(axis=1)).max()
    print("%.4f" % e)
    assert e < bound, (e, bound)


def pattern(decoded, dim, first):
    raw = np.fromfile(decoded, "<u1")
    assert raw.size % (4 * dim) == 0, "not whole frames: %d bytes" % raw.size
    b = raw.view("<f4").reshape(-1, dim)
    i = np.arange(dim)
    for k in range(b.shape[0]):
        f = first + k
        want = ((i * 31 + f * 17) % 255 - 127).astype(np.float32) / np.float32(127) * np.float32(0.9)
        want[::64] = 1.0
        e = np.abs(b[k] - want).max()
        assert e <= 1.0 / 127 / 2 * 1.01, "frame %d: error %g" % (f, e)
    print(b.shape[0])


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "uniform":
        uniform(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "drift":
        drift(args[0])
    elif cmd == "err":
        err(args[0], args[1], int(args[2]), float(args[3]))
    elif cmd == "pattern":
        pattern(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit("unknown command " + cmd)
