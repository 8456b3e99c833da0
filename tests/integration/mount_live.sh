#!/bin/bash
# The mount while the store changes and under stress: models imported or
# removed appear and disappear (open files keep reading), a corrupt chunk
# gives EIO on exactly the reads that touch it,
# umount under load is clean and the store mounts again.
. "$(dirname "$0")/lib.sh"
require getfattr mdb_stat

M="$T/mnt"
tczfs init >/dev/null
# refusals before anything is mounted
mkdir -p "$T/full" && touch "$T/full/x"
expect_fail "non-empty mount point" tczfs mount "$T/full"
grep -q "not empty" "$T/err" || fail "message: $(cat "$T/err")"
expect_fail "missing mount point" tczfs mount "$T/nope"
expect_fail "missing store" tczfs --store "$T/nostore" mount "$T/full"
grep -q "no store" "$T/err" || fail "message: $(cat "$T/err")"

"$GEN" "$T/a.safetensors" --size-mb 8 --dtype f32 --seed 1
"$GEN" "$T/b.safetensors" --size-mb 8 --dtype bf16 --seed 2
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
mount_store "$M" --cache-mb 16 --stats-interval 1

# live import and removal
ls "$M" | grep -qx b && fail "b listed before import"
tczfs import "$T/b.safetensors" --name b --quiet >/dev/null
ls "$M" | grep -qx b || fail "b not listed after import"
cmp -s "$T/b.safetensors" "$M/b/model.safetensors" || fail "b differs"
exec 7<"$M/b/model.safetensors"
tczfs rm b
ls "$M" | grep -qx b && fail "b still listed after rm"
sleep 1.2 # past the entry timeout
[ -e "$M/b" ] && fail "b still reachable after rm"
cat <&7 >"$T/b.read"
cmp -s "$T/b.safetensors" "$T/b.read" || fail "an open file of a removed model stopped reading"
exec 7<&-

# removed and imported again under the same name, within the name's
# cache time (1 s): once the daemon has seen the removal (its refresh runs
# every half second, and at a listing of the root), the path leads to the
# new model, never ENOENT
for pause in list 0.7 1.1; do
	tczfs import "$T/a.safetensors" --name again --quiet >/dev/null
	ls "$M/again/layers" >/dev/null
	tczfs rm again
	if [ $pause = list ]; then ls "$M" >/dev/null; else sleep $pause; fi
	tczfs import "$T/b.safetensors" --name again --quiet >/dev/null
	ls "$M/again/layers" >/dev/null || fail "re-imported 'again' not found after $pause s"
	cmp -s "$T/b.safetensors" "$M/again/model.safetensors" ||
		fail "'again' shows the old content after $pause s"
	tczfs rm again
	sleep 0.6
done

# a listing is one snapshot: changing the store in the middle of it (here
# between 1 KiB getdents batches) neither cuts it short nor garbles it
for i in $(seq 1 60); do
	tczfs import "$SRC_ROOT/tests/corpus/safetensors/valid-two.safetensors" \
		--name "many$i" --quiet >/dev/null
done
seen=$("$SLOW_LISTDIR" "$M" "$TCZFS rm many30 && sleep 1.2")
# ., .., asic, streams, a and the 60 (b was removed above)
[ "$seen" = 65 ] || fail "a listing changed mid-way saw $seen entries, not 65"
[ "$(ls "$M" | wc -l)" = 62 ] || fail "the next listing: $(ls "$M" | wc -l)"
for i in $(seq 1 60); do [ $i = 30 ] || tczfs rm "many$i"; done

# four walkers listing and stat'ing everything, killed mid-way (their
# releases race their readdirs), while models come and go: the daemon
# frees nothing still in use (checked under ASan by tools/test)
walkers=""
for i in 1 2 3 4; do
	(while :; do
		timeout -s KILL 0.$((i + 1)) find "$M" -exec stat {} + >/dev/null 2>&1
	done) &
	walkers="$walkers $!"
done
for i in $(seq 1 12); do
	tczfs import "$SRC_ROOT/tests/corpus/safetensors/valid-two.safetensors" \
		--name "walk$((i % 3))" --quiet >/dev/null 2>&1 || true
	tczfs rm "walk$(((i + 1) % 3))" 2>/dev/null || true
	sleep 0.1
done
# shellcheck disable=SC2086
kill $walkers 2>/dev/null || true
wait $walkers 2>/dev/null || true
sleep 0.5
ls "$M" >/dev/null || fail "the daemon died under parallel walks"
cmp -s "$T/a.safetensors" "$M/a/model.safetensors" || fail "a after the walks"
for i in 0 1 2; do tczfs rm "walk$i" 2>/dev/null || true; done

# a huge shape: its xattr is whole and nothing past it leaks
$PY - "$T/huge.safetensors" <<'PY'
import json, struct, sys
h = {"z": {"dtype": "F32", "shape": [0] + [2**63 - 1] * 31, "data_offsets": [0, 0]},
     "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
j = json.dumps(h).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(j)) + j + bytes(8))
PY
tczfs import "$T/huge.safetensors" --name huge --quiet >/dev/null
v=$(getfattr --only-values -n user.tczfs.shape "$M/huge/layers/z.npy")
want="[0$(printf ', %s' $(seq 31 | sed 's/.*/9223372036854775807/'))]"
[ "$v" = "$want" ] || fail "shape xattr: $v"
# tczfs stat shows it whole too (it is longer than 255 bytes)
[ "$(tczfs stat "$M/huge/layers/z.npy" | sed -n 's/^shape *//p')" = "$want" ] ||
	fail "tczfs stat cut the shape: $(tczfs stat "$M/huge/layers/z.npy" | grep shape)"
tczfs rm huge

# access statistics reach the store
cat "$M/a/model.safetensors" >/dev/null
sleep 2.5
n=$(mdb_stat -s stats "$TCZFS_STORE" | awk '/Entries/ {print $2}')
[ "$n" -gt 0 ] || fail "no statistics saved"

# EIO on exactly the reads that touch a corrupt chunk
"$GEN" "$T/c.safetensors" --size-mb 6 --dtype f32 --seed 3
tczfs import "$T/c.safetensors" --name c --quiet >/dev/null
umount_store "$M"
before=$(mdb_stat -s chunks "$TCZFS_STORE" | awk '/Entries/ {print $2}')
# corrupt a chunk of c: the one whose key sorts first among c's chunks that
# are not shared (a and c have no chunks in common: different seeds)
for i in $(seq 0 $((before - 1))); do
	"$CORRUPT" "$TCZFS_STORE" "$i" >/dev/null
	if tczfs verify c >/dev/null 2>&1; then
		"$CORRUPT" "$TCZFS_STORE" "$i" >/dev/null # flip it back
	else
		break
	fi
done
tczfs verify a >/dev/null || fail "the corruption hit a, not c"
mount_store "$M" --cache-mb 16
$PY - "$M/c/model.safetensors" "$T/c.safetensors" <<'PY'
import errno, os, sys
mnt, src = sys.argv[1], open(sys.argv[2], "rb").read()
fd = os.open(mnt, os.O_RDONLY)
bs = 4096
bad = []
for off in range(0, len(src), bs):
    try:
        b = os.pread(fd, bs, off)
    except OSError as e:
        assert e.errno == errno.EIO, e
        bad.append(off)
        continue
    assert b == src[off:off + bs], "wrong bytes at %d" % off
assert bad, "no read failed"
# one run of blocks, no longer than a chunk (1 MiB) plus a partial block
# at each end, and the failures repeat
assert bad == list(range(bad[0], bad[-1] + bs, bs)), "failures not contiguous"
assert len(bad) * bs <= (1 << 20) + 2 * bs, len(bad)
for off in (bad[0], bad[-1]):
    try:
        os.pread(fd, 1, off)
        raise SystemExit("a read of a corrupt range succeeded")
    except OSError as e:
        assert e.errno == errno.EIO
# a big read running into bad data returns only good bytes: a short count
# ending before the bad block (the kernel's rule), then EIO
start = max(0, bad[0] - (2 << 20))
try:
    b = os.pread(fd, 4 << 20, start)
    assert len(b) <= bad[0] + bs - start and b == src[start:start + len(b)], len(b)
    os.pread(fd, 4 << 20, start + len(b))
    raise SystemExit("reading on into the corrupt range succeeded")
except OSError as e:
    assert e.errno == errno.EIO
print("EIO on %d KiB at offset %d, every other byte correct" % (len(bad) * bs // 1024, bad[0]))
PY
grep -q "corrupt" "$T/daemon.log" || fail "the checksum failure was not logged"
cmp -s "$T/a.safetensors" "$M/a/model.safetensors" || fail "a is damaged"
umount_store "$M"
tczfs rm c

# a sharded model under read load (memory bounds: mount_memory.sh)
"$GEN" "$T/big" --size-mb 64 --dtype bf16 --shards 2 --seed 4
tczfs import "$T/big" --name big --quiet >/dev/null
mount_store "$M" --cache-mb 16
cat "$M"/big/*.safetensors >/dev/null

# umount under read load, then a second mount of the same store
for i in 1 2 3; do
	(for _ in 1 2 3; do cat "$M/big/model.safetensors" >/dev/null 2>&1; done) &
	loaders="${loaders:-} $!"
done
sleep 0.5
umount_store "$M"
wait $loaders
mount_store "$M" --cache-mb 16
cmp -s "$T/a.safetensors" "$M/a/model.safetensors" || fail "second mount"
umount_store "$M"
echo ok
