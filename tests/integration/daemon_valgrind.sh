#!/bin/bash
# The daemon under valgrind: it starts (it used to stat its own mount point
# at start and deadlock there), serves a listing, a whole file and .npy
# files, unmounts, and valgrind reports no error and no leak.
. "$(dirname "$0")/lib.sh"
require valgrind
[ -z "${TCZ_SANITIZER:-}" ] || skip "a sanitizer build does not run under valgrind"

M="$T/mnt"
tczfs init >/dev/null
"$GEN" "$T/a.safetensors" --size-mb 2 --dtype bf16 --seed 1
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
mkdir -p "$M"
timeout 120 valgrind -q --error-exitcode=9 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect \
	"$TCZFS" mount "$M" -f --cache-mb 8 >"$T/vg.log" 2>&1 &
vg=$!
echo $vg >"$T/daemon.pid"
for _ in $(seq 120); do
	grep -qs " $M fuse.tczfs " /proc/mounts && break
	kill -0 $vg 2>/dev/null || break
	sleep 0.25
done
grep -qs " $M fuse.tczfs " /proc/mounts || fail "no mount under valgrind: $(cat "$T/vg.log")"
timeout 60 ls "$M/a" >/dev/null || fail "listing under valgrind"
timeout 60 cmp -s "$T/a.safetensors" "$M/a/model.safetensors" || fail "bytes under valgrind"
timeout 60 cat "$M"/a/layers/*.npy >/dev/null || fail ".npy under valgrind"
tczfs umount "$M"
rc=0
wait $vg || rc=$?
[ $rc = 0 ] || fail "valgrind (exit $rc): $(grep -v 'tczfs\[info\]' "$T/vg.log" | head -30)"
echo ok
