#!/bin/sh
# The reference reader (tools/asic-reader, Python + NumPy, written from
# docs/formats.md) against images the C code writes: for f32, f16 and
# i8 images of a generated model (dense, 1-D, 0-D, empty, split and TT
# tensors), y = W x for 3 random x equals NumPy's product with the
# model's values within 1e-5 relative (f32) or the documented bound
# (f16/i8), and layout.json agrees with the entry table. Then the corpus:
# the reader accepts the valid images and refuses every malformed one.
set -eu
: "${ASIC_WRITE:?}" "${ASIC_READER:?}" "${TCZ_CORPUS_DIR:?}"
py=/usr/bin/python3
if ! "$py" -c 'import numpy, xxhash' 2>/dev/null; then
	echo "asic_reader: SKIP: python3-numpy or python3-xxhash missing"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for dt in f32 f16 i8; do
	"$ASIC_WRITE" "$tmp/$dt" "$dt" 7
	"$ASIC_READER" "$tmp/$dt/image.img" --layout "$tmp/$dt/layout.json"
	"$py" - "$tmp/$dt" "$dt" "$ASIC_READER" <<'PY'
import json, subprocess, sys
import numpy as np

d, dt, reader = sys.argv[1:4]
lay = json.load(open(d + "/layout.json"))
rng = np.random.default_rng(11)


def err_bound(v, blocks):
    """Elementwise bound on |v - decoded v| for a matrix v (rows, cols)
    from the documented rules, per tile row of its blocks."""
    if dt == "f32":
        return np.zeros_like(v)
    e = np.zeros_like(v)
    for b in blocks:
        g = b["tile_rows"]
        for r0 in range(b["row0"], b["row0"] + b["rows"], g):
            r1 = min(r0 + g, b["row0"] + b["rows"])
            tr = v[r0:r1]
            m = np.abs(tr).max() if tr.size else 0.0
            if dt == "i8":
                s = m / 127 * (1 + 2**-20)
                e[r0:r1] = s * (0.5 + 2**-16) + 2**-118
            else:
                e[r0:r1] = 2**-11 * np.abs(tr) + 2**-38 * m + 2**-148
    return e


def tt_matrix(cores):
    w = cores[0].reshape(cores[0].shape[1], -1)  # (n1, r1)
    for g in cores[1:]:
        w = (w @ g.reshape(g.shape[0], -1)).reshape(-1, g.shape[2])
        # w: (n1*..*nk, rk) with row-major mode order
    n1 = cores[0].shape[1]
    return w.reshape(n1, -1)


checked = 0
for line in open(d + "/manifest"):
    kind, name, *rest = line.split()
    blocks = {}
    for b in lay["blocks"]:
        if b["tensor"] == name:
            blocks.setdefault(b["core"], []).append(b)
    if kind == "dense":
        w = np.load(d + "/%s.npy" % name).astype(np.float64)
        e = err_bound(w, blocks[0])
        W, Wabs, Wplus = w, np.abs(w), np.abs(w) + e
    else:
        k = int(rest[0])
        cores = [np.load(d + "/%s.core%d.npy" % (name, c)).astype(np.float64)
                 for c in range(k)]
        plus = []
        for c, g in enumerate(cores):
            m = g.reshape(-1, g.shape[2])
            plus.append((np.abs(m) + err_bound(m, blocks[c])).reshape(g.shape))
        W = tt_matrix(cores)
        Wabs = tt_matrix([np.abs(g) for g in cores])
        Wplus = tt_matrix(plus)
    rows, cols = W.shape
    X = rng.standard_normal((3, cols))
    np.save(d + "/x.npy", X)
    subprocess.run([reader, d + "/image.img", "--tensor", name, "--x",
                    d + "/x.npy", "-o", d + "/y.npy"], check=True)
    Y = np.load(d + "/y.npy")
    assert Y.shape == (3, rows), (name, Y.shape)
    ref = X @ W.T
    if dt == "f32":
        num = np.linalg.norm(Y - ref)
        den = np.linalg.norm(ref)
        assert num <= 1e-5 * den or (den == 0 and num == 0), (name, num, den)
        # also elementwise against |W| |x|
        assert (np.abs(Y - ref) <= 1e-5 * (np.abs(X) @ Wabs.T) + 1e-300).all(), name
    else:
        bound = np.abs(X) @ (Wplus - Wabs).T
        slack = 1e-9 * (np.abs(X) @ Wplus.T)
        bad = np.abs(Y - ref) > bound + slack
        assert not bad.any(), (name, np.abs(Y - ref)[bad][:5], bound[bad][:5])
        if den := np.linalg.norm(ref):
            print("  %s %-10s relative error %.2e (bound %.2e)" % (
                dt, name, np.linalg.norm(Y - ref) / den,
                np.linalg.norm(bound) / den))
    checked += 1
    if checked > 2:
        continue
    # a 1-D x gives a 1-D y, the first row's
    np.save(d + "/x1.npy", X[0])
    out = subprocess.run([reader, d + "/image.img", "--tensor", name,
                          "--x", d + "/x1.npy"], check=True,
                         capture_output=True, text=True).stdout.split()
    y1 = np.array([float(v) for v in out])
    assert y1.shape == (rows,), name
    assert (np.abs(y1 - Y[0]) <= 1e-12 * (np.abs(X[0]) @ Wplus.T)).all(), name
assert checked >= 10, checked
print("%s: %d tensors: W x within the bound" % (dt, checked))
PY
done

# layout.json that disagrees is refused
sed 's/"tile_rows": 1,/"tile_rows": 2,/' "$tmp/f32/layout.json" >"$tmp/bad.json"
if "$ASIC_READER" "$tmp/f32/image.img" --layout "$tmp/bad.json" 2>"$tmp/err"; then
	echo "asic_reader: a wrong layout.json was accepted" >&2
	exit 1
fi
grep -q "disagrees with the image" "$tmp/err"

# the corpus, in one run: the reader refuses exactly the malformed
# images, each with one line
cd "$TCZ_CORPUS_DIR/asic"
# shellcheck disable=SC2046
if "$ASIC_READER" $(cut -f1 EXPECT) 2>"$tmp/err"; then
	echo "asic_reader: the corpus was accepted whole" >&2
	exit 1
fi
grep -v '	ok$' EXPECT | cut -f1 | sort >"$tmp/want"
sed -n 's/^asic-reader: \([^:]*\): .*/\1/p' "$tmp/err" | sort >"$tmp/got"
if ! cmp -s "$tmp/want" "$tmp/got" ||
	[ "$(wc -l <"$tmp/err")" -ne "$(wc -l <"$tmp/want")" ]; then
	echo "asic_reader: refused images differ from EXPECT:" >&2
	diff "$tmp/want" "$tmp/got" >&2 || true
	exit 1
fi
n=$(wc -l <EXPECT)
echo "asic_reader corpus: $n passed, 0 failed"
