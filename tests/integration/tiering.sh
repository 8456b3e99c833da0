#!/bin/bash
# Tiering that acts (SPEC 7), through a real mount:
# - scores and tiers follow score = reads * 1024 / (now - last + 1) under a
#   controlled clock (TCZFS_NOW=@FILE), hand-computed;
# - a hot tensor is served without decoding (decode counter still);
# - cost tiering: cold tensors re-encoded denser in the background, bytes
#   unchanged for 4 readers meanwhile, verify clean, the store smaller;
# - a daemon killed in the middle of a re-encode leaves nothing behind;
# - precision tiering within --max-error, errors measured by NumPy equal to
#   the recorded ones, generations and mtimes moved, an open file reads
#   its old content whole;
# - a pin set with setfattr survives a remount.
. "$(dirname "$0")/lib.sh"
require getfattr setfattr mdb_stat

M="$T/mnt"
CLOCK="$T/clock"
tczfs init >/dev/null
xa() { getfattr --absolute-names --only-values -n "user.tczfs.$1" "$2"; }

# -- scores and tiers under a controlled clock ------------------------------
"$GEN" "$T/small.safetensors" --size-mb 1 --dtype f32 --seed 1
tczfs import "$T/small.safetensors" --name s --quiet >/dev/null
now() { echo "$1" >"$CLOCK"; }
now 1000
export TCZFS_NOW="@$CLOCK"
mount_store "$M" --cache-mb 16 --hot-mb 0 --tier-interval 0
F="$M/s/layers/model.norm.weight.npy" # small: one read request an access
[ "$(stat -c %s "$F")" -le 65536 ] || fail "the probe tensor is not small"
access() { # one read request, past the page cache
	$PY -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.pread(fd, 64, 0)' "$F"
}
expect() { # clock tier, computed by hand in the comments
	now "$1"
	sleep 0.01 # a new mtime on the clock file
	[ "$(xa tier "$F")" = "$2" ] ||
		fail "at t=$1: tier $(xa tier "$F"), want $2 (reads $(xa reads "$F"))"
}
expect 1000 cold # never read: score 0
access           # reads 1, last access 1000
[ "$(xa reads "$F")" = 1 ] || fail "reads $(xa reads "$F") after one access"
expect 1000 hot  # 1 * 1024 / (0 + 1) = 1024 >= 512
expect 1001 hot  # 1024 / 2 = 512
expect 1002 warm # 1024 / 3 = 341
expect 1015 warm # 1024 / 16 = 64
expect 1016 cold # 1024 / 17 = 60
access
access           # reads 3, last access 1016
expect 1016 hot  # 3072 / 1
expect 1021 hot  # 3072 / 6 = 512
expect 1022 warm # 3072 / 7 = 438
expect 1063 warm # 3072 / 48 = 64
expect 1064 cold # 3072 / 49 = 62
umount_store "$M"
# thresholds of the mount's own: hot at 100, warm at 10
now 1064
mount_store "$M" --cache-mb 16 --hot-mb 0 --tier-interval 0 --hot-score 100 --warm-score 10
expect 1064 warm # 62: now warm
expect 1045 hot  # 3072 / 30 = 102 >= 100
expect 1046 warm # 3072 / 31 = 99
expect 1322 warm # 3072 / 307 = 10
expect 1323 cold # 3072 / 308 = 9
umount_store "$M"
unset TCZFS_NOW
echo "tier transitions: as computed by hand"

# -- a hot tensor is read without decoding ----------------------------------
"$GEN" "$T/m.safetensors" --size-mb 16 --dtype bf16 --seed 2
tczfs import "$T/m.safetensors" --name m --quiet >/dev/null
mount_store "$M" --cache-mb 64 --tier-interval 0
H="$M/m/layers/lm_head.weight.npy"
setfattr -n user.tczfs.tier -v hot "$H"
for _ in $(seq 50); do # the hot set fills within a pass (2 s)
	[ "$(xa decodes "$H")" -gt 0 ] && break
	sleep 0.1
done
sleep 0.5
d0=$(xa decodes "$H")
[ "$d0" -gt 0 ] || fail "the hot tensor was not decoded ahead"
# 100 reads that reach the daemon: the page cache dropped before each,
# and counted by the daemon (pushes of a hot file's pages, below, can
# refill the cache between a drop and the read: those do not count)
$PY - "$H" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
rng = random.Random(7)
reads = lambda: int(os.getxattr(sys.argv[1], "user.tczfs.reads"))
r0, tries = reads(), 0
while reads() - r0 < 100:
    tries += 1
    assert tries < 10000, "the reads did not reach the daemon"
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # past the page cache
    os.pread(fd, 4096, rng.randrange(size - 4096))
PY
[ "$(xa decodes "$H")" = "$d0" ] ||
	fail "a hot tensor was decoded again: $d0 -> $(xa decodes "$H") decodes"
echo "hot tensor: 100 random reads by the daemon, decodes stayed at $d0"
# a second read of the hot file's first MiB that reaches the daemon has
# that MiB pushed into the page cache (resident by mincore, with no
# readahead), with the source's values; a warm file's reads leave theirs
$PY - "$H" "$M/m/layers/model.embed_tokens.weight.npy" "$T/m.safetensors" \
	"$(dirname "$0")" <<'PY'
import ctypes, os, sys, time
import numpy as np
sys.path.insert(0, sys.argv[4])
import stfile
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                      ctypes.c_int, ctypes.c_int, ctypes.c_long]
def resident(path):  # bytes of the file in the page cache
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    a = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
    assert a not in (None, ctypes.c_void_p(-1).value), "mmap failed"
    n = (size + 4095) // 4096
    vec = (ctypes.c_ubyte * n)()
    assert libc.mincore(ctypes.c_void_p(a), ctypes.c_size_t(size), vec) == 0
    libc.munmap(ctypes.c_void_p(a), ctypes.c_size_t(size))
    os.close(fd)
    return sum(v & 1 for v in vec) * 4096, size
def miss(path):  # two 4 KiB reads past the page cache, no readahead
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.pread(fd, 4096, 0)
    time.sleep(0.05)  # a push it started is not dropped by what follows
    os.pread(fd, 4096, 8192)
    os.close(fd)
hot, warm, src = sys.argv[1:4]
miss(hot)
_, size = resident(hot)
want = min(size, 1 << 20)  # its window; a sequential reader gets 16 more
for _ in range(100):
    got, _ = resident(hot)
    if got >= want:
        break
    time.sleep(0.05)
assert got >= want, "hot file: %d bytes in the page cache after two reads, want >= %d" % (got, want)
hot_got = got
t = stfile.tensors(src)["lm_head.weight"]
a = np.load(hot)  # its first MiB from the pushed pages
assert np.array_equal(a, stfile.array(*t)), "pushed pages differ from the source"
miss(warm)
time.sleep(0.5)
got, _ = resident(warm)
assert got <= 4 * 4096, "a warm file's reads left %d bytes in the page cache" % got
print("hot file: %d of %d bytes in the page cache after two 4 KiB reads" % (min(hot_got, size), size))
PY
# SIGTERM while readers stream the hot file: pushes may wait for pages
# that queued reads hold, yet the daemon exits and the readers end (with
# an error), nothing hangs
pids=
for k in 1 2 3; do
	$PY - "$H" >"$T/reader$k.out" 2>&1 <<'PY' &
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    while True:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.lseek(fd, 0, 0)
        while os.read(fd, 1 << 20):
            pass
except OSError as e:
    print("reader stopped:", e.strerror)
PY
	pids="$pids $!"
done
sleep 1
dpid=$(cat "$T/daemon.pid")
kill -TERM "$dpid"
wait_exit "$dpid" 10 || fail "the daemon did not exit 10 s after SIGTERM under readers"
for p in $pids; do
	wait_exit "$p" 5 || fail "a reader still hangs after the daemon exited"
done
grep -q "reader stopped" "$T"/reader*.out || fail "the readers did not see the daemon go"
echo "SIGTERM under 3 readers of the hot file: the daemon exited, the readers ended"
# the pin survives a remount (kept in the store)
mount_store "$M" --cache-mb 64 --tier-interval 0
[ "$(xa tier "$H")" = hot ] || fail "the pin did not survive a remount"
tczfs tier ls m --json | $PY -c '
import json, sys
d = json.load(sys.stdin)
t = {x["name"]: x for x in d["tensors"]}["lm_head.weight"]
assert t["pinned"] and t["tier"] == "hot", t'
setfattr -n user.tczfs.tier -v auto "$H"
tczfs tier ls m --json | $PY -c '
import json, sys
t = {x["name"]: x for x in json.load(sys.stdin)["tensors"]}["lm_head.weight"]
assert not t["pinned"], "auto did not unpin"'
expect_fail "a bad tier value" setfattr -n user.tczfs.tier -v lukewarm "$H"
umount_store "$M"

# -- cost tiering: cold tensors re-encoded denser, bytes unchanged ----------
tczfs tier pin m/model.safetensors cold >/dev/null # every tensor cold
before=$(tczfs info m --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
# pages of the chunk table: what the chunks cost on disk, values included
chunk_pages() { mdb_stat -s chunks "$TCZFS_STORE" | awk '/pages:/ {n += $NF} END {print n}'; }
pbefore_c=$(chunk_pages)
want=$(sha "$T/m.safetensors")
mount_store "$M" --cache-mb 32 --tier-interval 1 --tier-io-mb-s 200
readers=""
for i in 1 2 3 4; do
	(for _ in $(seq 12); do
		[ "$(sha "$M/m/model.safetensors")" = "$want" ] || { echo BAD >"$T/bad$i"; }
		sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
	done) &
	readers="$readers $!"
done
for _ in $(seq 150); do # until every lossless tensor is at the dense level
	left=$(tczfs tier ls m --json | $PY -c '
import json, sys
print(sum(1 for t in json.load(sys.stdin)["tensors"] if t["codec"] == "lossless/z3"))')
	[ "$left" = 0 ] && break
	sleep 0.2
done
# shellcheck disable=SC2086
wait $readers
ls "$T"/bad* 2>/dev/null && fail "a reader got wrong bytes during the re-encode"
[ "$left" = 0 ] || fail "$left tensors were not re-encoded"
after=$(tczfs info m --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
[ "$(sha "$M/m/model.safetensors")" = "$want" ] || fail "the bytes changed"
for f in "$M"/m/layers/*.npy; do cat "$f" >/dev/null || fail "read $f"; done
umount_store "$M"
grep -q "corrupt\|cannot" "$T/daemon.log" && fail "daemon: $(grep 'corrupt\|cannot' "$T/daemon.log")"
tczfs verify >/dev/null || fail "verify after the re-encode"
pafter_c=$(chunk_pages)
echo "cost tiering: stored bytes $before -> $after, chunk table pages $pbefore_c -> $pafter_c"
[ "$after" -lt "$before" ] || fail "the store did not shrink ($before -> $after)"
# tensors of more than one chunk are cut again into 1 MiB chunks (each
# value's last page is half empty on average: 8 values per MiB cost ~4 pages
# more than one does), and the chunk table holds them in fewer pages
tczfs info m --json | $PY -c '
import json, sys
for t in json.load(sys.stdin)["tensors"]:
    if t["codec"] == "lossless" and t["bytes"] > 1 << 20:
        assert t["chunk_bytes"] == 1 << 20 and t["chunks"] == -(-t["bytes"] >> 20), t'
[ "$pafter_c" -lt "$pbefore_c" ] || fail "the chunk table did not shrink ($pbefore_c -> $pafter_c pages)"
tczfs export m -o "$T/m.out"
cmp -s "$T/m.out" "$T/m.safetensors" || fail "export after the re-encode differs"
rm -f "$T/m.out"

# -- a daemon killed in the middle of a re-encode ------------------------------
"$GEN" "$T/k.safetensors" --size-mb 24 --dtype f32 --seed 3
tczfs import "$T/k.safetensors" --name k --quiet >/dev/null
tczfs tier pin k/model.safetensors cold >/dev/null
mount_store "$M" --cache-mb 32 --tier-interval 1 --tier-io-mb-s 2
for _ in $(seq 100); do # a re-encode under way: its marker is there
	n=$(mdb_stat -s imports "$TCZFS_STORE" | awk '/Entries/ {print $2}')
	[ "${n:-0}" -gt 0 ] && break
	sleep 0.1
done
[ "${n:-0}" -gt 0 ] || fail "no re-encode started"
sleep 1
pid=$(cat "$T/daemon.pid")
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M"
tczfs verify >"$T/v" || fail "verify after a killed re-encode: $(cat "$T/v")"
tczfs export k -o "$T/k.out"
cmp -s "$T/k.out" "$T/k.safetensors" || fail "k after a killed re-encode differs"
rm -f "$T/k.out"
tczfs rm s # a writer: rolls the dead daemon's batch back
[ "$(mdb_stat -s imports "$TCZFS_STORE" | awk '/Entries/ {print $2}')" = 0 ] ||
	fail "the dead re-encode was not rolled back"
[ "$(mdb_stat -s pending "$TCZFS_STORE" | awk '/Entries/ {print $2}')" = 0 ] ||
	fail "pending chunks left"
tczfs verify >"$T/v" || fail "verify after the rollback: $(cat "$T/v")"
tczfs rm k
echo "killed re-encode: rolled back, nothing left"

# -- precision tiering ----------------------------------------------------
if [ -f "$MODELS/retsim.f32.safetensors" ]; then
	P="$MODELS/retsim.f32.safetensors"
else
	P="$T/k.safetensors" # still a real test of the mechanism
fi
tczfs import "$P" --name p --quiet >/dev/null
tczfs tier policy p precision --max-error 0.05
pbefore=$(tczfs info p --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
mount_store "$M" --cache-mb 32 --tier-interval 0
mt0=$(stat -c %Y "$M/p/model.safetensors")
sleep 1.1 # the new mtime differs from the import time
# a reader with the file open before, through a re-quantization
$PY - "$M/p/model.safetensors" "$P" "$T/held.ready" "$T/held.go" <<'PY' &
import os, sys, time
f = open(sys.argv[1], "rb")
src = open(sys.argv[2], "rb").read()
half = f.read(len(src) // 2)
open(sys.argv[3], "w").close()
while not os.path.exists(sys.argv[4]):
    time.sleep(0.05)
time.sleep(1.5)  # past the daemon's refresh
rest = f.read()
got = half + rest
# either the old content whole, or (had it been opened later) the new
assert got == src, "an open file mixed old and new content"
PY
held=$!
for _ in $(seq 100); do [ -e "$T/held.ready" ] && break; sleep 0.05; done
TCZFS_NOW=$(($(date +%s) + 1000000)) tczfs tier run p --quiet >"$T/run" ||
	fail "tier run: $(cat "$T/run")"
touch "$T/held.go"
wait $held || fail "the open file did not read its old content whole"
sleep 1.5 # the daemon adopts the new revision
tczfs info p --json >"$T/p.json"
tczfs export p -o "$T/p.out"
$PY "$SRC_ROOT/tests/integration/checks.py" lossy "$P" "$T/p.out" "$T/p.json" "--max-error 0.05"
# the mount serves the new values (new inodes), with new generations
cmp -s "$T/p.out" "$M/p/model.safetensors" || fail "the mount does not show the re-quantized model"
mt1=$(stat -c %Y "$M/p/model.safetensors")
[ "$mt1" -gt "$mt0" ] || fail "the mtime did not move ($mt0 -> $mt1)"
g=$(xa generation "$M/p/model.safetensors")
[ "$g" -ge 1 ] || fail "the generation did not move: $g"
pafter=$(tczfs info p --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
echo "precision tiering at 0.05: stored bytes $pbefore -> $pafter, generation $g"
[ "$pafter" -lt "$pbefore" ] || fail "precision tiering did not shrink the store"
umount_store "$M"
tczfs verify >/dev/null || fail "verify after precision tiering"
echo ok
