#!/bin/bash
# The daemon's memory stays within its cache budget plus a small constant
# (64 MiB) whatever the model size: models 8x the cache, stored lossless,
# as 8 bits and as TT, read sequentially and by 8 readers at once, on 2
# and on 8 FUSE threads. Under a sanitizer the bound is not checked (its
# shadow memory is not the daemon's), everything else is.
. "$(dirname "$0")/lib.sh"

# meson sets MALLOC_PERTURB_, which makes glibc write every block it
# frees: freed heap memory kept for reuse becomes resident, and the peak
# RSS measured here rose by ~12 MiB (73.6 against 62.0 MiB for b8 with 10
# FUSE threads). That measures the harness, not the daemon.
unset MALLOC_PERTURB_
M="$T/mnt"
tczfs init >/dev/null
"$GEN" "$T/bf.safetensors" --size-mb 256 --dtype bf16 --seed 4
tczfs import "$T/bf.safetensors" --name bf --quiet >/dev/null
tczfs import "$T/bf.safetensors" --name b8 --bits 8 --quiet >/dev/null
# low-rank matrices: TT is smaller than dense, so --tt keeps it
$PY - "$T/lr.safetensors" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(0)
h, blobs, off = {}, [], 0
for i in range(64):
    a = (rng.standard_normal((4096, 32)) @ rng.standard_normal((32, 256)) / 30).astype(np.float32)
    b = a.tobytes()
    h["w%d.weight" % i] = {"dtype": "F32", "shape": [4096, 256], "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
j = json.dumps(h).encode()
j += b" " * (-len(j) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(j)) + j + b"".join(blobs))
PY
tczfs import "$T/lr.safetensors" --name tt --tt --eps 1e-3 --quiet >/dev/null
tczfs info tt --json | $PY -c '
import json, sys
assert all(t["codec"] == "tt" for t in json.load(sys.stdin)["tensors"])'

sha_src_bf=$(sha "$T/bf.safetensors")
check() { # model cache_mb threads
	model=$1 cache=$2 threads=$3
	args="--cache-mb $cache"
	[ "$threads" = 0 ] || args="$args --threads $threads"
	# shellcheck disable=SC2086
	mount_store "$M" $args
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
	sum=$(sha "$M/$model/model.safetensors")
	case $model in
	bf) [ "$sum" = "$sha_src_bf" ] || fail "$model: wrong bytes" ;;
	tt) [ -n "$sum" ] || fail "tt: nothing read" ;;
	esac
	# eight readers at once, each on other tensors
	ls "$M/$model/layers" | xargs -P 8 -I{} cat "$M/$model/layers/{}" >/dev/null ||
		fail "$model: a layers/ read failed"
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$(cat "$T/daemon.pid")/status")
	umount_store "$M"
	echo "$model, --cache-mb $cache, threads ${threads/#0/default}: daemon peak RSS $((hwm / 1024)) MiB"
	if [ -z "${TCZ_SANITIZER:-}" ] && [ "$hwm" -gt $(((cache + 64) * 1024)) ]; then
		fail "$model: peak RSS $hwm KiB exceeds the cache ($cache MiB) + 64 MiB"
	fi
}
check bf 32 0
check b8 32 0
check tt 32 0
check tt 16 2
check tt 16 8
grep -q "corrupt\|cannot" "$T/daemon.log" && fail "daemon log: $(cat "$T/daemon.log")"
echo ok
