#!/bin/bash
# The mount next to other processes using the store: a read completes
# while another process holds the write lock; open or mmap'd files pin no
# LMDB pages; a killed daemon's reader slots are cleared by the next
# command; a map grown by an importer is adopted without remount; two
# daemons' statistics add up; reads of a removed model succeed or fail
# with ENOENT, never EIO.
. "$(dirname "$0")/lib.sh"
require getfattr mdb_stat

: "${HOLD_WRITE:?}"
M="$T/mnt"
M2="$T/mnt2"
tczfs init >/dev/null

# mount2 MNT [args]: a second daemon, its pid in $T/daemon2.pid
mount2() {
	mnt=$1
	shift
	mkdir -p "$mnt"
	"$TCZFS" mount "$mnt" -f "$@" 2>>"$T/daemon2.log" &
	echo $! >"$T/daemon2.pid"
	for _ in $(seq 100); do
		grep -qs " $mnt fuse.tczfs " /proc/mounts && return 0
		sleep 0.05
	done
	fail "second mount did not come up"
}
umount2() {
	"$TCZFS" umount "$1" || fail "umount $1"
	pid=$(cat "$T/daemon2.pid")
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
		sleep 0.05
	done
	fail "the second daemon did not exit"
}

"$GEN" "$T/a.safetensors" --size-mb 8 --dtype f32 --seed 1
"$GEN" "$T/b.safetensors" --size-mb 8 --dtype bf16 --seed 2
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
tczfs import "$T/b.safetensors" --name b --quiet >/dev/null

# -- a read while another process holds the store's write transaction ----
mount_store "$M" --cache-mb 16 --stats-interval 1
cat "$M/a/model.safetensors" >/dev/null # statistics to save: the daemon
# will try to write them while the transaction is held
rm -f "$T/ready" "$T/done"
"$HOLD_WRITE" "$TCZFS_STORE" "$T/ready" "$T/done" 20 &
holder=$!
for _ in $(seq 100); do [ -e "$T/ready" ] && break; sleep 0.05; done
[ -e "$T/ready" ] || fail "the write transaction was not taken"
sleep 2 # past a statistics save, which now waits for the writer
$PY - "$M/b/model.safetensors" "$T/b.safetensors" <<'PY'
import os, sys, time
t0 = time.monotonic()
fd = os.open(sys.argv[1], os.O_RDONLY)  # a lookup and a model load too
got = os.pread(fd, 1 << 20, 3 << 20)
dt = time.monotonic() - t0
want = open(sys.argv[2], "rb").read()[3 << 20:4 << 20]
assert got == want, "wrong bytes"
print("uncached 1 MiB read with the write lock held elsewhere: %.1f ms" % (dt * 1e3))
assert dt < 5, "the read waited for the writer (%.1f s)" % dt
PY
touch "$T/done"
wait $holder || fail "the read returned only after the writer let go"
umount_store "$M"

# -- open and mmap'd files pin no store pages ------------------------------
"$GEN" "$T/c.safetensors" --size-mb 16 --dtype bf16 --seed 3
cycles() { # store: 8 imports and removals of c while mounted
	for i in $(seq 8); do
		tczfs import "$T/c.safetensors" --name c --quiet >/dev/null
		tczfs rm c
	done
	stat -c %s "$TCZFS_STORE/data.mdb"
}
export TCZFS_STORE="$T/s1"
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
tczfs import "$T/b.safetensors" --name b --quiet >/dev/null
mount_store "$M" --cache-mb 16
base=$(cycles)
umount_store "$M"
export TCZFS_STORE="$T/s2"
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
tczfs import "$T/b.safetensors" --name b --quiet >/dev/null
mount_store "$M" --cache-mb 16
$PY - "$M/b/model.safetensors" "$M/b/layers" "$T/hold.ready" "$T/hold.done" <<'PY' &
import mmap, os, sys, time
f = open(sys.argv[1], "rb")
f.read(4096)
npy = sorted(os.listdir(sys.argv[2]))[0]
g = open(os.path.join(sys.argv[2], npy), "rb")
m = mmap.mmap(g.fileno(), 0, prot=mmap.PROT_READ)
assert m[:6] == b"\x93NUMPY"
open(sys.argv[3], "w").close()
while not os.path.exists(sys.argv[4]):
    time.sleep(0.05)
assert m[:6] == b"\x93NUMPY"
PY
keeper=$!
for _ in $(seq 100); do [ -e "$T/hold.ready" ] && break; sleep 0.05; done
[ -e "$T/hold.ready" ] || fail "the reader did not open its files"
held=$(cycles)
touch "$T/hold.done"
wait $keeper || fail "the open and mmap'd files stopped reading"
umount_store "$M"
echo "data.mdb after 8 import+rm cycles: $base bytes, $held with a file open and one mmap'd"
[ "$held" -le $((2 * base)) ] || fail "open files made the store grow to $held bytes (without: $base)"
export TCZFS_STORE="$T/store"

# -- a killed daemon's reader slots --------------------------------------
mount_store "$M" --cache-mb 16
cat "$M/a/model.safetensors" "$M/b/model.safetensors" >/dev/null
pid=$(cat "$T/daemon.pid")
mdb_stat -r "$TCZFS_STORE" | awk '{print $1}' | grep -qx "$pid" ||
	fail "the daemon holds no reader slot (mdb_stat -r: $(mdb_stat -r "$TCZFS_STORE" | tr '\n' ' '))"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M"
tczfs ls >/dev/null
if mdb_stat -r "$TCZFS_STORE" | awk '{print $1}' | grep -qx "$pid"; then
	fail "the killed daemon's reader slots are still there after tczfs ls"
fi

# -- a map another process grows, adopted by the running daemon -------------
export TCZFS_STORE="$T/s3" TCZFS_MAPSIZE=64MiB
tczfs init >/dev/null
tczfs import "$T/a.safetensors" --name a --quiet >/dev/null
mount_store "$M" --cache-mb 16 --stats-interval 1
cat "$M/a/model.safetensors" >/dev/null
"$GEN" "$T/big.safetensors" --size-mb 150 --dtype bf16 --seed 5
tczfs import "$T/big.safetensors" --name big --quiet >/dev/null
sleep 1.5
cmp -s "$T/big.safetensors" "$M/big/model.safetensors" ||
	fail "a model imported past the daemon's map is not readable"
cmp -s "$T/a.safetensors" "$M/a/model.safetensors" || fail "a after the map grew"
sleep 1.5 # a statistics save past the grown map
umount_store "$M"
grep -q "cannot save access statistics" "$T/daemon.log" &&
	fail "statistics were not saved: $(grep statistics "$T/daemon.log")"
tczfs verify >/dev/null || fail "verify after the map grew"
unset TCZFS_MAPSIZE
rm -f "$T/big.safetensors"
export TCZFS_STORE="$T/store"

# -- two daemons on one store: their reads add up --------------------------
tczfs import "$T/a.safetensors" --name two --quiet >/dev/null # never read
mount_store "$M" --cache-mb 16 --stats-interval 3600
mount2 "$M2" --cache-mb 16 --stats-interval 3600
npy=$(ls "$M/two/layers" | head -1)
cat "$M/two/layers/$npy" >/dev/null
cat "$M2/two/layers/$npy" >/dev/null
cat "$M2/two/layers/$npy" >/dev/null # the page cache: no more requests
r1=$(getfattr --absolute-names --only-values -n user.tczfs.reads "$M/two/layers/$npy")
r2=$(getfattr --absolute-names --only-values -n user.tczfs.reads "$M2/two/layers/$npy")
[ "$r1" -gt 0 ] && [ "$r2" -gt 0 ] || fail "reads not counted: $r1, $r2"
umount_store "$M"
umount2 "$M2"
mount_store "$M" --cache-mb 16
r=$(getfattr --absolute-names --only-values -n user.tczfs.reads "$M/two/layers/$npy")
echo "reads: $r1 through one daemon, $r2 through the other, $r saved"
[ "$r" = $((r1 + r2)) ] || fail "saved reads $r, not $r1 + $r2"
umount_store "$M"

# -- reads of a removed model: their snapshot, or ENOENT ---------------------
: >"$T/daemon.log"
mount_store "$M" --cache-mb 16
for round in 1 2 3; do
	tczfs import "$T/b.safetensors" --name r --quiet >/dev/null
	ls "$M/r/layers" >/dev/null                 # looked up,
	stat "$M/r/model.safetensors" >/dev/null    # not opened
	tczfs rm r
	$PY - "$M/r" "$T/b.safetensors" $round <<'PY'
import errno, os, sys
d, src, rnd = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
def read(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError as e:
        assert e.errno == errno.ENOENT, "%s: %s" % (p, e)
        return None
got = read(os.path.join(d, "model.safetensors"))
assert got is None or got == src, "wrong bytes from a removed model"
try:
    names = os.listdir(os.path.join(d, "layers"))
except OSError as e:
    assert e.errno == errno.ENOENT, e
    names = []
for n in names[:8]:
    read(os.path.join(d, "layers", n))
print("round %d: model.safetensors %s" % (rnd, "read whole" if got else "gone (ENOENT)"))
PY
done
umount_store "$M"
if grep -i "corrupt" "$T/daemon.log"; then fail "a removed model was logged as damage"; fi
echo ok
