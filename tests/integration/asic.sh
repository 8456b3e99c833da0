#!/bin/bash
# asic/ device images through a real mount: for a dense lossless model
# (../shared/models/stories260K.f32.safetensors, or a generated one), a TT
# model (a low-rank tensor imported with --tt) and a quantized one
# (--bits 8), every matrix's y = W x from the image (tools/asic-reader,
# the independent Python reader, for 3 random x) equals NumPy's product
# with the layers/*.npy values: within 1e-5 relative on f32 images, within
# the documented per-element bound on f16 and i8 images. Also: the same
# sha256 from two mounts (different thread counts) and `tczfs asic -o`;
# ls -l and stat decode nothing; layout.json agrees with the image, no
# core over its SRAM, imbalance <= 1.10 with >= 4x more blocks than cores;
# a model too large for a device is refused with what is missing; a
# corrupted byte and a truncation are refused by both checkers, and so is
# the malformed corpus; models imported and removed while mounted come and
# go under asic/.
. "$(dirname "$0")/lib.sh"

"$PY" -c 'import xxhash' 2>/dev/null || skip "python3-xxhash is not installed"
READER="$SRC_ROOT/tools/asic-reader"
CORPUS="$SRC_ROOT/tests/corpus/asic"

tczfs init >/dev/null
dense="$MODELS/stories260K.f32.safetensors"
if [ ! -f "$dense" ]; then
	dense="$T/dense.safetensors"
	"$GEN" "$dense" --size-mb 2 --dtype f32 --seed 4
fi
tczfs import "$dense" --name dense --quiet >/dev/null
tczfs import "$dense" --name q8 --bits 8 --quiet >/dev/null
"$PY" - "$T/lr.safetensors" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(0)
a = (rng.standard_normal((700, 9)) @ rng.standard_normal((9, 300))).astype(np.float32)
b = rng.standard_normal((64,)).astype(np.float32)
h = {"w": {"dtype": "F32", "shape": [700, 300], "data_offsets": [0, a.nbytes]},
     "norm": {"dtype": "F32", "shape": [64], "data_offsets": [a.nbytes, a.nbytes + b.nbytes]}}
j = json.dumps(h).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(j)) + j + a.tobytes() + b.tobytes())
PY
tczfs import "$T/lr.safetensors" --name tt --tt --eps 1e-4 --quiet >/dev/null
tczfs info tt --json | grep -q '"codec": "tt"' || fail "no TT tensor in the tt model"
tczfs asic profile add half16 --cores 16 --sram-kib 512 --tile-bytes 128 --lanes 16 --dtype f16 >/dev/null
tczfs asic profile add int8 --cores 8 --sram-kib 256 --tile-bytes 64 --lanes 16 --dtype i8 >/dev/null
tczfs asic profile add tiny --cores 2 --sram-kib 64 --tile-bytes 64 --lanes 16 >/dev/null

# profiles: bad ones refused with one line, nothing stored
for bad in "--cores 0 --sram-kib 64 --tile-bytes 64 --lanes 16" \
	"--cores 4 --sram-kib 64 --tile-bytes 62 --lanes 16" \
	"--cores 4 --sram-kib 64 --tile-bytes 64 --lanes 32"; do
	# shellcheck disable=SC2086
	expect_fail "profile $bad" tczfs asic profile add bad $bad
	[ "$(wc -l <"$T/err")" = 1 ] || fail "profile $bad: $(cat "$T/err")"
done
expect_fail "an unknown dtype" tczfs asic profile add bad --cores 4 \
	--sram-kib 64 --tile-bytes 64 --lanes 16 --dtype f64
tczfs asic profile ls | grep -q "^bad " && fail "a bad profile was stored"
expect_fail "newport is built in" tczfs asic profile rm newport
expect_fail "a duplicate profile" tczfs asic profile add int8 --cores 8 --sram-kib 256 --tile-bytes 64 --lanes 16

M="$T/mnt"
mount_store "$M" --cache-mb 32 --threads 1
ls -l "$M/asic" "$M/asic/dense" >/dev/null
stat "$M/asic/dense/newport.img" "$M/asic/q8/int8.img" "$M/asic/tt/half16.img" >/dev/null
decodes=0
for f in "$M"/dense/layers/*.npy "$M"/q8/layers/*.npy "$M"/tt/layers/*.npy; do
	d=$(getfattr --absolute-names --only-values -n user.tczfs.decodes "$f")
	decodes=$((decodes + d))
done
[ "$decodes" = 0 ] || fail "ls -l and stat of images decoded $decodes chunks"
for m in dense q8 tt; do
	[ -f "$M/asic/$m/tiny.img" ] && fail "$m: tiny.img listed though it does not fit"
	for f in newport.img layout.json half16.img half16.layout.json int8.img int8.layout.json; do
		[ -f "$M/asic/$m/$f" ] || fail "$m: no asic/$m/$f"
	done
done
cat "$M/asic/dense/newport.img" >/dev/null
d=$(getfattr --absolute-names --only-values -n user.tczfs.decodes "$M/dense/layers/$(ls "$M/dense/layers" | head -1)")
[ "$d" -gt 0 ] || fail "the decode counter does not count image reads"
echo "ls -l / stat of 9 images: 0 decodes (reading one: $d for its first tensor)"

"$PY" - "$M" "$READER" <<'PY'
import importlib.machinery, importlib.util, json, os, sys
import numpy as np
mnt, reader_path = sys.argv[1:]
loader = importlib.machinery.SourceFileLoader("asic_reader", reader_path)
spec = importlib.util.spec_from_loader("asic_reader", loader)
R = importlib.util.module_from_spec(spec)
loader.exec_module(R)
from urllib.parse import unquote
rng = np.random.default_rng(11)

def npy_name(t):
    out = "".join("%%%02X" % c if c in (0x25, 0x2F) or c < 0x20 or c == 0x7F
                  else chr(c) for c in t.encode())
    return out + ".npy"

def err_bound(v, blocks, dt):
    """|v - decoded v| per element, from the documented rules"""
    e = np.zeros_like(v)
    for b in blocks:
        g = b["tile_rows"]
        for r0 in range(b["row0"], b["row0"] + b["rows"], g):
            r1 = min(r0 + g, b["row0"] + b["rows"])
            tr = v[r0:r1]
            m = np.abs(tr).max() if tr.size else 0.0
            if dt == "i8":
                e[r0:r1] = m / 127 * (1 + 2**-20) * (0.5 + 2**-16) + 2**-118
            else:
                e[r0:r1] = 2**-11 * np.abs(tr) + 2**-38 * m + 2**-148
    return e

total = 0
for model in ("dense", "q8", "tt"):
    for dev, dt, lay in (("newport", "f32", "layout.json"),
                         ("half16", "f16", "half16.layout.json"),
                         ("int8", "i8", "int8.layout.json")):
        img_path = os.path.join(mnt, "asic", model, dev + ".img")
        lay_path = os.path.join(mnt, "asic", model, lay)
        img = R.load(img_path, lay_path)  # checks everything, layout too
        L = json.load(open(lay_path))
        sram = L["profile"]["sram_bytes"]
        assert max(L["core_bytes"]) <= sram, (model, dev)
        placed = [b for b in L["blocks"] if b["device_core"] is not None]
        if len(placed) >= 4 * L["profile"]["cores"]:
            assert L["imbalance"] <= 1.10, (model, dev, L["imbalance"])
            print("%s/%s: %d blocks on %d cores, imbalance %.3f" % (
                model, dev, len(placed), L["profile"]["cores"], L["imbalance"]))
        for name in img.tensors:
            t = name.decode()
            w = np.load(os.path.join(mnt, model, "layers", npy_name(t)))
            w = w.astype(np.float64)
            rows, cols = img.w_shape(name)
            W = w.reshape(rows, cols)
            cores = img.tensors[name]
            X = rng.standard_normal((3, cols))
            Y = img.matvec(name, X)
            ref = X @ W.T
            if dt == "f32" or len(cores) > 1:
                if dt != "f32":
                    continue  # TT on f16/i8: the bound needs the cores
                num, den = np.linalg.norm(Y - ref), np.linalg.norm(ref)
                assert num <= 1e-5 * den or num == den == 0, (model, t, num, den)
            else:
                blocks = [b for b in L["blocks"] if b["tensor"] == t]
                e = err_bound(W, blocks, dt)
                bound = np.abs(X) @ e.T + 1e-9 * (np.abs(X) @ (np.abs(W) + e).T)
                bad = np.abs(Y - ref) > bound
                assert not bad.any(), (model, dev, t, np.abs(Y - ref)[bad][:3], bound[bad][:3])
            total += 1
print("%d matrices: W x from the images equals NumPy's within the bounds" % total)
PY

a=$(sha "$M/asic/dense/newport.img")
b=$(sha "$M/asic/q8/int8.img")
umount_store "$M"
mount_store "$M" --cache-mb 8 --threads 4
[ "$(sha "$M/asic/dense/newport.img")" = "$a" ] || fail "a second mount gives other image bytes"
[ "$(sha "$M/asic/q8/int8.img")" = "$b" ] || fail "a second mount gives another i8 image"
tczfs asic dense -o "$T/dense.img"
[ "$(sha "$T/dense.img")" = "$a" ] || fail "tczfs asic -o differs from the mount"
tczfs cat asic/dense/newport.img | cmp -s - "$T/dense.img" || fail "tczfs cat differs"
tczfs asic dense --layout -o "$T/layout.json"
cmp -s "$T/layout.json" "$M/asic/dense/layout.json" || fail "asic --layout differs"
echo "images: same sha256 from two mounts, tczfs asic -o and tczfs cat"

# too large for a device: refused, saying how much is missing
expect_fail "too large" tczfs asic dense --device tiny -o "$T/tiny.img"
grep -q "missing" "$T/err" || fail "too large: $(cat "$T/err")"
[ ! -e "$T/tiny.img" ] || fail "a refused image left a file"

# damage: both checkers refuse it
cp "$T/dense.img" "$T/bad.img"
size=$(stat -c %s "$T/bad.img")
printf '\x5a' | dd of="$T/bad.img" bs=1 seek=$((size - 100)) conv=notrunc status=none
expect_fail "corrupted byte" tczfs asic check "$T/bad.img"
grep -q "checksum" "$T/err" || fail "corrupt: $(cat "$T/err")"
"$PY" "$READER" "$T/bad.img" 2>"$T/err" && fail "the reader accepted a corrupted image"
grep -q "checksum" "$T/err" || fail "reader: $(cat "$T/err")"
head -c $((size / 2)) "$T/dense.img" >"$T/cut.img"
expect_fail "truncated" tczfs asic check "$T/cut.img"
[ "$(wc -l <"$T/err")" = 1 ] || fail "truncated: $(cat "$T/err")"
"$PY" "$READER" "$T/cut.img" 2>/dev/null && fail "the reader accepted a truncated image"
n=0
while IFS=$'\t' read -r f why; do
	if [ "$why" = ok ]; then
		tczfs asic check "$CORPUS/$f" >/dev/null || fail "$f: valid image refused"
		continue
	fi
	expect_fail "$f" tczfs asic check "$CORPUS/$f"
	grep -qF -- "$why" "$T/err" || fail "$f: expected '$why', got: $(cat "$T/err")"
	n=$((n + 1))
done <"$CORPUS/EXPECT"
echo "corrupted, truncated and $n malformed images refused"

# models come and go under asic/
tczfs import "$T/lr.safetensors" --name late --quiet >/dev/null
for _ in $(seq 40); do [ -d "$M/asic/late" ] && break; sleep 0.05; done
[ -f "$M/asic/late/newport.img" ] || fail "a model imported while mounted is not under asic/"
tczfs rm late >/dev/null
for _ in $(seq 60); do [ -e "$M/asic/late" ] || break; sleep 0.05; done
[ -e "$M/asic/late" ] && fail "a removed model stays under asic/"
# profiles too
tczfs asic profile rm int8 >/dev/null
for _ in $(seq 60); do [ -e "$M/asic/dense/int8.img" ] || break; sleep 0.05; done
[ -e "$M/asic/dense/int8.img" ] && fail "a removed profile's image stays"
umount_store "$M"
echo ok
