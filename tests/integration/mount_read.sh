#!/bin/bash
# Reading through the mount: model.safetensors byte-identical (lossless),
# every layers/*.npy equal to the source tensor (or within its recorded
# error when lossy), also through mmap; 200 dd reads at random offsets and
# lengths equal the source's bytes; 4 concurrent readers agree; xattrs.
. "$(dirname "$0")/lib.sh"
require getfattr

M="$T/mnt"
tczfs init >/dev/null
"$GEN" "$T/sharded" --size-mb 24 --shards 3 --dtype bf16 --seed 11
"$GEN" "$T/f32.safetensors" --size-mb 12 --dtype f32 --seed 12
tczfs import "$T/sharded" --name sharded --quiet >/dev/null
tczfs import "$T/f32.safetensors" --name f32 --quiet >/dev/null
tczfs import "$T/f32.safetensors" --name f32q --bits 8 --quiet >/dev/null
tczfs import "$T/f32.safetensors" --name f32tt --tt --eps 0.05 --quiet >/dev/null
mount_store "$M" --cache-mb 32

# the kernel's readahead on the mount is raised to 16 MiB (root: sysfs),
# and stays so after the kernel took the FUSE init reply (which lowers it)
if [ "$(id -u)" = 0 ]; then
	dev=$(awk -v m="$(realpath "$M")" '$5 == m && / - fuse.tczfs / { print $3 }' \
		/proc/self/mountinfo)
	ra=/sys/class/bdi/$dev/read_ahead_kb
	for _ in $(seq 100); do
		[ "$(cat "$ra" 2>/dev/null)" = 16384 ] && break
		sleep 0.02
	done
	sleep 0.2
	[ "$(cat "$ra" 2>/dev/null)" = 16384 ] ||
		fail "readahead of the mount is $(cat "$ra" 2>/dev/null) KiB, want 16384"
	echo "readahead of the mount: 16384 KiB"
fi

# byte-identical files
for f in "$T"/sharded/*; do
	cmp -s "$f" "$M/sharded/$(basename "$f")" || fail "sharded/$(basename "$f") differs"
done
cp "$M/f32/model.safetensors" "$T/copy"
[ "$(sha "$T/copy")" = "$(sha "$T/f32.safetensors")" ] || fail "cp of f32 differs"
echo "model files byte-identical"

# every .npy against the source tensors, plain and mmap'd
check_npy() { # model source
	tczfs info "$1" --json >"$T/info.json"
	$PY "$SRC_ROOT/tests/integration/checks.py" npy "$M/$1" "$2" "$T/info.json"
}
check_npy sharded "$T/sharded"
check_npy f32 "$T/f32.safetensors"
check_npy f32q "$T/f32.safetensors"
check_npy f32tt "$T/f32.safetensors"

# 200 dd reads: random, chunk-straddling and tensor-straddling ranges
$PY - "$T/f32.safetensors" >"$T/ranges" <<'PY'
import json, random, struct, sys
b = open(sys.argv[1], "rb").read()
hl = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + hl]); h.pop("__metadata__", None)
size = len(b)
rng = random.Random(5)
edges = [8 + hl + v["data_offsets"][0] for v in h.values()]   # tensor starts
edges += [8 + hl + v["data_offsets"][0] + k * (1 << 20)        # chunk starts
          for v in h.values()
          for k in range(1, (v["data_offsets"][1] - v["data_offsets"][0]) >> 20)]
edges += [8 + hl, 0, size]
for i in range(200):
    if i % 2:
        e = rng.choice(edges)
        off = max(0, e - rng.randint(1, 5000))
    else:
        off = rng.randrange(size)
    print(off, rng.choice([1, 7, 4096, 65536, 300000, 1 << 20, 3 << 20]))
PY
n=0
while read -r off len; do
	dd if="$M/f32/model.safetensors" of="$T/a" skip="$off" count="$len" \
		iflag=skip_bytes,count_bytes status=none bs=1M
	dd if="$T/f32.safetensors" of="$T/b" skip="$off" count="$len" \
		iflag=skip_bytes,count_bytes status=none bs=1M
	cmp -s "$T/a" "$T/b" || fail "dd at $off+$len differs"
	n=$((n + 1))
done <"$T/ranges"
echo "$n dd reads equal"

# small random reads outside a sequential run read only the blocks under
# them (docs/formats.md, "Block index"): on a fresh mount the bytes are
# the source's, more spans are decoded than whole chunks would be, and a
# second pass over the same offsets decodes nothing (the spans are cached)
umount_store "$M"
mount_store "$M" --cache-mb 32 --hot-mb 0
$PY - "$M/f32/model.safetensors" "$T/f32.safetensors" <<'PY'
import os, random, sys
mnt, src = sys.argv[1], open(sys.argv[2], "rb").read()
fd = os.open(mnt, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
rng = random.Random(9)
offs = [rng.randrange(0, len(src) - 4096) & ~4095 for _ in range(300)]
dec = lambda: int(os.getxattr(mnt, "user.tczfs.decodes"))
chunks = len({o >> 17 for o in offs} | {(o + 4095) >> 17 for o in offs})
for p in (1, 2):
    before = dec()
    for o in offs:
        assert os.pread(fd, 4096, o) == src[o:o + 4096], "wrong bytes at %d" % o
    n = dec() - before
    if p == 1:
        assert n > 1.5 * chunks, "%d decodes for %d chunks: whole chunks" % (n, chunks)
        n1 = n
    else:
        assert n == 0, "the second pass decoded %d spans" % n
print("block reads: %d spans for 300 reads in %d chunks" % (n1, chunks))
PY
echo "small random reads decode blocks, cached"

# those random reads had the index of the tensors they touched loaded
# ahead (fs/warm.c); sequential readers never do: their prefetcher looks
# up the same entries in file order
last_warm() { grep 'index loaded ahead of random reads' "$T/daemon.log" | tail -1; }
umount_store "$M"
case "$(last_warm)" in
*": 0 tensor(s)"* | "") fail "random reads loaded no index: $(last_warm)" ;;
esac
mount_store "$M" --cache-mb 32 --hot-mb 0
cat "$M/f32/model.safetensors" "$M"/sharded/*.safetensors >/dev/null
umount_store "$M"
case "$(last_warm)" in
*": 0 tensor(s), 0 chunk(s)") ;;
*) fail "sequential reads loaded the index: $(last_warm)" ;;
esac
echo "index loaded ahead of random readers only: $(last_warm | sed 's/.*reads: //') for the sequential ones"
mount_store "$M" --cache-mb 32 --hot-mb 0

# a chunk read in parts a third time is decoded whole behind the read
# (the prefetcher, which needs --cache-mb >= 64), and so is one read a
# second time once its tensor had as many part reads as chunks (a reader
# dense in it); a read of another of its blocks then decodes nothing. A
# second read in a tensor read sparsely decodes only its span.
umount_store "$M"
mount_store "$M" --cache-mb 128 --hot-mb 0
$PY - "$M/f32/model.safetensors" "$T/f32.safetensors" <<'PY'
import json, os, struct, sys, time
mnt = sys.argv[1]
with open(sys.argv[2], "rb") as f:  # the header, from the source
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
fd = os.open(mnt, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
base = 8 + n
big = sorted((v["data_offsets"] for k, v in hdr.items() if k != "__metadata__" and
              v["data_offsets"][1] - v["data_offsets"][0] >= 512 << 10),
             key=lambda o: o[0])
assert len(big) >= 2, "the model has no two tensors of 4 chunks"
dec = lambda: int(os.getxattr(mnt, "user.tczfs.decodes"))
def page(t, c, b):  # a page inside block b of chunk c of tensor t
    return (base + t[0] + (c << 17) + (b << 14) + 4095) & ~4095
def settle():
    time.sleep(1)
    return dec()
# sparse: a third read in parts decodes the chunk whole
t = big[0]
d0 = dec()
os.pread(fd, 4096, page(t, 0, 0))
os.pread(fd, 4096, page(t, 0, 3))  # second: its span alone
d1 = settle()
os.pread(fd, 4096, page(t, 0, 5))  # third: and the whole chunk behind
d2 = settle()
os.pread(fd, 4096, page(t, 0, 7))  # from the whole chunk
d3 = dec()
assert d1 - d0 == 2, "%d decodes for two part reads of a sparse tensor" % (d1 - d0)
assert d2 - d1 == 2, "%d decodes for a third part read and the whole chunk" % (d2 - d1)
assert d3 == d2, "a read after the whole decode decoded %d" % (d3 - d2)
# dense: as many part reads of the tensor as it has chunks, the last a
# second read of a chunk
t = big[1]
nc = (t[1] - t[0] + (128 << 10) - 1) >> 17
d0 = dec()
for c in range(nc - 1):
    os.pread(fd, 4096, page(t, c, 0))
d1 = settle()
os.pread(fd, 4096, page(t, 0, 2))  # read nc, chunk 0's second: whole behind
d2 = settle()
os.pread(fd, 4096, page(t, 0, 6))
d3 = dec()
assert d1 - d0 == nc - 1, "%d decodes for %d part reads" % (d1 - d0, nc - 1)
assert d2 - d1 == 2, "%d decodes for a dense second read and the whole chunk" % (d2 - d1)
assert d3 == d2, "a read after the whole decode decoded %d" % (d3 - d2)
print("whole chunks behind: the third part read of a sparse tensor, "
      "the second of a dense one (%d chunks)" % nc)
PY
echo "chunks read on in parts are decoded whole"

# 4 concurrent readers of the same and of different files
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
for i in 1 2 3 4; do
	case $i in
	1|2) f="$M/sharded/model.safetensors" ;;
	3) f="$M/f32/model.safetensors" ;;
	4) f="$M/sharded/layers/model.embed_tokens.weight.npy" ;;
	esac
	(sha256sum "$f" >"$T/r$i") &
	readers="${readers:-} $!"
done
wait $readers # not a bare wait: the daemon is a background job too
[ "$(cut -d' ' -f1 "$T/r1")" = "$(cut -d' ' -f1 "$T/r2")" ] || fail "readers 1 and 2 disagree"
[ "$(cut -d' ' -f1 "$T/r3")" = "$(sha "$T/f32.safetensors")" ] || fail "reader 3"
tczfs export sharded --file model.safetensors -o "$T/merged"
[ "$(cut -d' ' -f1 "$T/r1")" = "$(sha "$T/merged")" ] || fail "merged model.safetensors differs from export"
echo "4 concurrent readers agree"

# extended attributes
npy="$M/f32q/layers/model.layers.0.self_attn.q_proj.weight.npy"
getfattr -d "$npy" >"$T/x"
for a in codec ratio rel_error tier dtype shape; do
	grep -q "^user.tczfs.$a=" "$T/x" || fail "xattr $a missing"
done
grep -q 'user.tczfs.codec="quant8"' "$T/x" || fail "codec xattr: $(cat "$T/x")"
grep -q 'user.tczfs.dtype="F32"' "$T/x" || fail "dtype xattr"
grep -q 'user.tczfs.shape="\[' "$T/x" || fail "shape xattr"
tczfs stat "$npy" | grep -q "^tier" || fail "tczfs stat"
tczfs stat "$npy" --json | $PY -c 'import json,sys; d=json.load(sys.stdin); assert d["reads"] > 0 and d["codec"] == "quant8", d'
expect_fail "stat outside a mount" tczfs stat "$T/f32.safetensors"

# read-only
expect_fail "write into the mount" sh -c "echo x >'$M/f32/model.safetensors'"
expect_fail "create in the mount" touch "$M/f32/new"

umount_store "$M"
echo ok
