#!/bin/bash
# The real trained models of ../shared/models (SKIP when absent): lossless
# import and export byte-identical, the mounted model.safetensors too,
# every .npy equal to the source tensor; lossy profiles within their
# bounds, each tensor's error computed by NumPy equal to the recorded one.
. "$(dirname "$0")/lib.sh"

models=$(real_models)
[ -n "$models" ] || skip "no real models in $MODELS"
CHECK="$SRC_ROOT/tests/integration/checks.py"
tczfs init >/dev/null
n=0
for f in $models; do
	name=$(basename "$f" .safetensors)
	tczfs import "$f" --quiet >/dev/null
	tczfs export "$name" -o "$T/out.safetensors"
	[ "$(sha "$f")" = "$(sha "$T/out.safetensors")" ] ||
		fail "$name: exported bytes differ from the source"
	rm "$T/out.safetensors"
	n=$((n + 1))
done
echo "real models round-tripped: $n"

i=0
for f in $models; do
	for mode in "--bits 8" "--max-error 0.01" "--bits 3" "--tt --eps 0.05"; do
		i=$((i + 1))
		# shellcheck disable=SC2086
		tczfs import "$f" --name "l$i" $mode --quiet >/dev/null 2>&1
		tczfs export "l$i" -o "$T/l$i.safetensors"
		tczfs info "l$i" --json >"$T/l$i.json"
		$PY "$CHECK" lossy "$f" "$T/l$i.safetensors" "$T/l$i.json" "$mode"
		rm "$T/l$i.safetensors"
	done
done

M="$T/mnt"
mount_store "$M" --cache-mb 32
for f in $models; do
	name=$(basename "$f" .safetensors)
	[ "$(sha "$M/$name/model.safetensors")" = "$(sha "$f")" ] ||
		fail "$name: the mounted model.safetensors differs"
	tczfs info "$name" --json >"$T/info.json"
	$PY "$CHECK" npy "$M/$name" "$f" "$T/info.json"
done
for k in 1 2 3; do # a lossy model's .npy files carry their errors
	tczfs info "l$k" --json >"$T/info.json"
	$PY "$CHECK" npy "$M/l$k" "$(echo $models | cut -d' ' -f1)" "$T/info.json"
done
umount_store "$M"

# A fresh daemon, nothing cached: 4 KiB reads at random offsets decode
# only the 16 KiB blocks under them (shifted planes included: retsim's and
# silero's weights have them), and each must equal the source's bytes.
mount_store "$M" --cache-mb 32
$PY - "$M" $models <<'PY' || fail "random reads differ from the source"
import os, random, sys
mnt, files = sys.argv[1], sys.argv[2:]
rng = random.Random(13)
for f in files:
    name = os.path.basename(f)[:-len(".safetensors")]
    src = open(f, "rb").read()
    fd = os.open(os.path.join(mnt, name, "model.safetensors"), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    for _ in range(64):
        off = rng.randrange(0, len(src))
        got = os.pread(fd, 4096, off)
        if got != src[off:off + 4096]:
            sys.exit(f"{name}: 4 KiB at {off} differs")
    os.close(fd)
print(f"random reads match: {len(files)} models")
PY
umount_store "$M"
tczfs verify >/dev/null || fail "verify"
echo ok
