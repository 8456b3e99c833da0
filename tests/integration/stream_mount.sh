#!/bin/bash
# streams/ through a real mount (issue 10, "The mount"), every check
# against NumPy or the command line, never against the mount itself:
# - the SPEC 6 acceptance per pinned tier (N 512, G 64, 100 frames per
#   segment) with the frames written through MNT/streams/<name> by NumPy
#   in writes of 1, 7, 1.5 + 0.5 frames and 64 KiB pieces; errors per frame
#   computed from what the mount returns (the data file and the .npy
#   through numpy.load(mmap_mode='r')); ratios from the stored bytes;
#   the same bytes and segments as `stream push` of the same frames, and
#   as `stream cat` (raw and --format npy);
# - a write at a wrong offset: EINVAL; O_TRUNC / truncate: EPERM; the
#   .npy refuses writers; a second writer (mount or CLI): EBUSY;
# - 4 threads reading one open file at random offsets get its bytes;
# - a reader while a writer appends (1.5 frames a write, fsynced): whole
#   frames only, each within the bound;
# - streams created, appended to and removed by the CLI show at once
#   (ls, sizes), an open file of a removed one gets ESTALE;
# - getfattr values against `stream info --json`; the tier pinned by
#   setfattr; reads counted in the stream's statistics (saved in batches);
# - a partial frame left at close is dropped (and logged);
# - write + fsync, then SIGKILL of the daemon: the store verifies, every
#   fsynced frame is there after a remount;
# - a read-only mount: modes 0444, writers refused with EROFS.
. "$(dirname "$0")/lib.sh"
[ -c /dev/fuse ] || skip "no /dev/fuse"
require getfattr setfattr fusermount3
SP="$SRC_ROOT/tests/integration/streams.py"
M="$T/mnt"
js() { # js NAME EXPR: EXPR over `stream info NAME --json` as d
	tczfs stream info "$1" --json | $PY -c "import json,sys; d=json.load(sys.stdin); print($2)"
}
xa() { # xa FILE ATTR: the value of user.tczfs.ATTR
	getfattr --absolute-names --only-values -n "user.tczfs.$2" "$1"
}

# w.py PATH RAW DIM PLAN [flags]: writes frames of RAW to PATH through
# the mount, one os.write per PLAN item: a frame count (1.5 is one and a
# half frames) or "rest/BYTES" (the rest in writes of BYTES). Flags:
# plain (no O_APPEND: writes at the offset the file position says),
# fsync, hold=FILE (fsync, write FILE, then keep the file open)
cat >"$T/w.py" <<'PY'
import os, sys, time
path, raw, dim, plan = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
flags = sys.argv[5:]
data = open(raw, "rb").read()
fb = dim * 4
fd = os.open(path, os.O_WRONLY | (0 if "plain" in flags else os.O_APPEND))
if "plain" in flags:
    os.lseek(fd, 0, os.SEEK_END)
at = 0
for item in plan.split(","):
    if item.startswith("rest/"):
        step = int(item[5:])
        while at < len(data):
            n = os.write(fd, data[at:at + step])
            assert n == min(step, len(data) - at), n
            at += n
        continue
    n = int(round(float(item) * fb))
    assert os.write(fd, data[at:at + n]) == n
    at += n
if "fsync" in flags:
    os.fsync(fd)
for f in flags:
    if f.startswith("hold="):
        os.fsync(fd)
        open(f[5:] + ".tmp", "w").write(str(at // fb))
        os.rename(f[5:] + ".tmp", f[5:])
        os.write(fd, data[:fb * 3])  # not fsynced: may be lost
        time.sleep(120)
os.close(fd)
PY
# ioerr.py PATH WHAT: WHAT on PATH must fail; prints the errno's name
cat >"$T/ioerr.py" <<'PY'
import errno, os, sys
path, what = sys.argv[1], sys.argv[2]
try:
    if what == "pwrite0":
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, b"\0" * 2048, 0)
    elif what == "pwrite_past":
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, b"\0" * 2048, os.fstat(fd).st_size + 2048)
    elif what == "trunc":
        os.open(path, os.O_WRONLY | os.O_TRUNC)
    elif what == "truncate":
        os.truncate(path, 0)
    elif what == "open_w":
        os.open(path, os.O_WRONLY | os.O_APPEND)
    elif what == "read":
        fd = os.open(path, os.O_RDONLY)
        sys.stdin.readline()  # the caller removes the stream meanwhile
        os.read(fd, 4096)
    print("no error")
except OSError as e:
    print(errno.errorcode[e.errno])
PY

tczfs init >/dev/null
mount_store "$M" --stats-interval 1 --threads 4
[ "$(ls "$M/streams")" = "" ] || fail "streams/ of a store without streams: $(ls "$M/streams")"
sleep 1 # the maintenance thread's passes before any stream is seen

# -- CLI-created streams show at once ---------------------------------------------
tczfs stream create fresh --dim 4 >/dev/null
[ "$(ls "$M/streams" | tr '\n' ' ')" = "fresh fresh.npy " ] ||
	fail "ls after create: $(ls "$M/streams" | tr '\n' ' ')"
[ "$(stat -c '%s %a' "$M/streams/fresh")" = "0 644" ] || fail "fresh: $(stat -c '%s %a' "$M/streams/fresh")"
[ "$(stat -c '%a' "$M/streams/fresh.npy")" = 444 ] || fail "fresh.npy mode"
$PY - "$M/streams/fresh.npy" <<'PY' || fail "the .npy of an empty stream"
import sys, numpy as np
a = np.load(sys.argv[1])
assert a.shape == (0, 4) and a.dtype == np.float32, (a.shape, a.dtype)
PY
$PY -c "import numpy as np; np.arange(20, dtype='<f4').tofile('$T/f5.raw')"
tczfs stream push fresh "$T/f5.raw" >/dev/null
[ "$(stat -c %s "$M/streams/fresh")" = 80 ] || fail "size after a CLI push: $(stat -c %s "$M/streams/fresh")"
cmp -s "$M/streams/fresh" <(tczfs stream cat fresh) || fail "fresh differs from stream cat"
tczfs stream create fresh.npy --dim 2 >/dev/null # takes the name of the view
[ "$(ls "$M/streams" | tr '\n' ' ')" = "fresh fresh.npy fresh.npy.npy " ] ||
	fail "ls with a stream called fresh.npy: $(ls "$M/streams" | tr '\n' ' ')"
[ "$(stat -c %a "$M/streams/fresh.npy")" = 644 ] || fail "fresh.npy is not the stream"
tczfs stream rm fresh.npy
[ "$(stat -c %a "$M/streams/fresh.npy")" = 444 ] || fail "fresh.npy is not the view again"
echo "CLI create, push and rm show at once"

# -- SPEC 6 acceptance through the mount ----------------------------------------------
$PY "$SP" uniform "$T/u.raw" 300 512 1
# 1 + 7 + 1.5 + 0.5 + 90 = 100 frames, then 200 in 64 KiB writes (32 frames)
plan="1,7,1.5,0.5,90,rest/65536"
while read -r name tier warm bits ratio bound; do
	for s in "$name" "$name-cli"; do
		tczfs stream create "$s" --dim 512 --group 64 --warm-bits "$warm" \
			--segment-frames 100 >/dev/null
		tczfs stream tier "$s" "$tier" >/dev/null
	done
	$PY "$T/w.py" "$M/streams/$name" "$T/u.raw" 512 "$plan" ||
		fail "$name: writing through the mount"
	tczfs stream push "$name-cli" "$T/u.raw" >/dev/null
	[ "$(stat -c %s "$M/streams/$name")" = $((300 * 2048)) ] ||
		fail "$name: size $(stat -c %s "$M/streams/$name")"
	[ "$(js "$name" 'd["frames"], d["segments"], d["tier"]')" = "300 3 $tier" ] ||
		fail "$name: $(js "$name" 'd["frames"], d["segments"], d["tier"]')"
	[ "$(js "$name" 'sorted({(s["frames"], s["bits"]) for s in d["segment_list"]})')" = "[(100, $bits)]" ] ||
		fail "$name: segments $(js "$name" 'd["segment_list"]')"
	r=$(js "$name" '"%.4f" % (d["f32_bytes"] / d["stored_bytes"])')
	$PY -c "assert $r >= $ratio, ($r, $ratio)" || fail "$name: ratio $r < $ratio"
	cat "$M/streams/$name" >"$T/$name.out"
	e=$($PY "$SP" err "$T/u.raw" "$T/$name.out" 512 "$bound") ||
		fail "$name: max error per frame $e, bound $bound"
	# the .npy, mmap'd, against NumPy's frames and the data file
	$PY - "$M/streams/$name.npy" "$T/u.raw" "$T/$name.out" "$bound" <<'PY' ||
import sys, numpy as np
m = np.load(sys.argv[1], mmap_mode="r")
src = np.fromfile(sys.argv[2], "<f4").reshape(-1, 512).astype(np.float64)
assert m.shape == (300, 512) and m.dtype == np.float32, (m.shape, m.dtype)
e = (np.abs(m - src).max(axis=1) / np.abs(src).max(axis=1)).max()
assert e < float(sys.argv[4]), e
assert np.array_equal(m, np.fromfile(sys.argv[3], "<f4").reshape(-1, 512))
PY
		fail "$name: the .npy"
	# the command line reads the same, and the same as a CLI push
	tczfs stream cat "$name" -o "$T/$name.cat"
	cmp -s "$T/$name.out" "$T/$name.cat" || fail "$name: mount and stream cat differ"
	tczfs stream cat "$name" --format npy -o "$T/$name.npy"
	cmp -s "$M/streams/$name.npy" "$T/$name.npy" || fail "$name: .npy and stream cat --format npy differ"
	tczfs stream cat "$name-cli" -o "$T/$name.cli"
	cmp -s "$T/$name.out" "$T/$name.cli" || fail "$name: written through the mount != pushed"
	[ "$(js "$name" '[(s["first_frame"], s["frames"], s["bits"], s["bytes"]) for s in d["segment_list"]]')" = \
		"$(js "$name-cli" '[(s["first_frame"], s["frames"], s["bits"], s["bytes"]) for s in d["segment_list"]]')" ] ||
		fail "$name: segments differ from the pushed stream's"
	# xattrs against stream info
	f="$M/streams/$name"
	[ "$(xa "$f" dim) $(xa "$f" frames) $(xa "$f" segments) $(xa "$f" bits) $(xa "$f" tier)" = \
		"512 300 3 $bits $tier" ] || fail "$name: xattrs $(getfattr -d "$f" 2>&1)"
	[ "$(xa "$f" ratio)" = "$(js "$name" '"%.4f" % d["ratio"]')" ] ||
		fail "$name: ratio xattr $(xa "$f" ratio), info $(js "$name" 'd["ratio"]')"
	[ "$(xa "$f.npy" frames)" = 300 ] || fail "$name.npy: frames xattr"
	echo "$name: $bits bits, ${r}x, max error per frame $e (bound $bound), = push, = stream cat"
done <<EOF
hot hot 7 8 3.99 0.008
warm warm 7 7 4.56 0.016
warm5 warm 5 5 6.38 0.065
cold cold 7 3 10.63 0.30
EOF
getfattr --absolute-names -d "$M/streams/hot" | grep -c '^user.tczfs.' | grep -qx 6 ||
	fail "getfattr -d: $(getfattr --absolute-names -d "$M/streams/hot")"

# -- concurrent reads of one open file (O_DIRECT: each pread is a request)
$PY - "$M/streams/hot" "$T/hot.out" <<'PY' || fail "concurrent reads of one open file"
import os, random, sys, threading
want = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
bad = []
def run(seed):
    rng = random.Random(seed)
    for _ in range(100):
        off = rng.randrange(0, len(want), 512)
        n = rng.choice([512, 4096, 65536, 300 * 1024])
        if os.pread(fd, n, off) != want[off:off + n]:
            bad.append((off, n))
ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
assert not bad, bad[:5]
PY

# -- a reader while a writer appends through the mount: whole frames only ---------------
tczfs stream create live --dim 512 >/dev/null
tczfs stream tier live hot >/dev/null
cat >"$T/live.py" <<'PY'
import os, sys, time
data = open(sys.argv[2], "rb").read()[:200 * 2048]
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
for at in range(0, len(data), 3072):  # 1.5 frames a write, synced
    os.write(fd, data[at:at + 3072])
    os.fsync(fd)
    time.sleep(0.01)
os.close(fd)
PY
$PY "$T/live.py" "$M/streams/live" "$T/u.raw" &
lpid=$!
reads=0
while kill -0 $lpid 2>/dev/null; do
	cat "$M/streams/live" >"$T/live.out" || fail "a read while appending"
	$PY - "$T/u.raw" "$T/live.out" <<'PY' || fail "a reader saw a torn or wrong frame"
import sys, numpy as np
raw = np.fromfile(sys.argv[2], "<u1")
assert raw.size % 2048 == 0, "not whole frames: %d bytes" % raw.size
b = raw.view("<f4").reshape(-1, 512).astype(np.float64)
a = np.fromfile(sys.argv[1], "<f4").reshape(-1, 512)[:len(b)].astype(np.float64)
if len(b):
    assert (np.abs(a - b).max(axis=1) / np.abs(a).max(axis=1)).max() < 0.008
PY
	reads=$((reads + 1))
done
wait $lpid || fail "the writer through the mount failed"
[ "$(stat -c %s "$M/streams/live")" = $((200 * 2048)) ] || fail "live: $(stat -c %s "$M/streams/live") bytes"
[ "$reads" -ge 2 ] || fail "live: the reader ran $reads times only"
echo "live: $reads whole reads while the mount's writer appended"

# -- writes that are refused -----------------------------------------------------------
tczfs stream create w --dim 512 >/dev/null
$PY "$T/w.py" "$M/streams/w" "$T/u.raw" 512 2 plain || fail "a plain write at the end"
[ "$(stat -c %s "$M/streams/w")" = 4096 ] || fail "w: $(stat -c %s "$M/streams/w") bytes"
for what in pwrite0 pwrite_past; do
	[ "$($PY "$T/ioerr.py" "$M/streams/w" $what)" = EINVAL ] || fail "$what: not EINVAL"
done
[ "$($PY "$T/ioerr.py" "$M/streams/w" trunc)" = EPERM ] || fail "O_TRUNC: not EPERM"
[ "$($PY "$T/ioerr.py" "$M/streams/w" truncate)" = EPERM ] || fail "truncate: not EPERM"
truncate -s 4096 "$M/streams/w" || fail "truncate to the size is refused"
[ "$($PY "$T/ioerr.py" "$M/streams/hot.npy" open_w)" = EACCES ] || fail "a writer of the .npy"
[ "$(stat -c %s "$M/streams/w")" = 4096 ] || fail "w changed: $(stat -c %s "$M/streams/w") bytes"
# one writer at a time: an open file of the mount holds the stream (in a
# process of its own: a descriptor a subshell inherits would be closed,
# and close() gives the writer up)
mkfifo "$T/hold"
cat >"$T/hold.py" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
open(sys.argv[2], "w").write("open")
sys.stdin.readline()
os.close(fd)
PY
$PY "$T/hold.py" "$M/streams/w" "$T/held" <"$T/hold" &
hpid=$!
exec 4>"$T/hold"
for _ in $(seq 100); do
	[ -s "$T/held" ] && break
	sleep 0.05
done
[ "$(cat "$T/held")" = open ] || fail "the holder did not open w"
[ "$($PY "$T/ioerr.py" "$M/streams/w" open_w)" = EBUSY ] || fail "a second writer through the mount"
expect_fail "a CLI push while the mount writes" tczfs stream push w "$T/u.raw"
[ "$(wc -l <"$T/err")" = 1 ] || fail "push while busy: $(cat "$T/err")"
grep -q "streams/w: refused a writer" "$T/daemon.log" || fail "no log line for EBUSY"
echo >&4
exec 4>&-
wait $hpid
# close() gave the stream up: the command line writes at once
head -c 2048 "$T/u.raw" | tczfs stream push w - >/dev/null || fail "a push right after close"
[ "$(stat -c %s "$M/streams/w")" = 6144 ] || fail "w after the push: $(stat -c %s "$M/streams/w")"
# a partial frame left at close is dropped, and logged
$PY "$T/w.py" "$M/streams/w" "$T/u.raw" 512 1.5 || fail "writing 1.5 frames"
[ "$(stat -c %s "$M/streams/w")" = 8192 ] || fail "w after 1.5 frames: $(stat -c %s "$M/streams/w")"
for _ in $(seq 50); do # the release that drops it follows close()
	grep -q "streams/w: 1024 bytes of a partial frame" "$T/daemon.log" && break
	sleep 0.1
done
grep -q "streams/w: 1024 bytes of a partial frame .* dropped" "$T/daemon.log" ||
	fail "no log line for the dropped partial frame"
echo "wrong offsets EINVAL, truncation EPERM, second writer EBUSY, partial frame dropped"

# -- reads are counted, pins are taken ---------------------------------------------------
before=$(js hot 'd["accesses"]')
cat "$M/streams/hot" >/dev/null
for _ in $(seq 50); do
	[ "$(js hot 'd["accesses"]')" -gt "$before" ] && break
	sleep 0.1
done
[ "$(js hot 'd["accesses"]')" -gt "$before" ] || fail "reads through the mount are not counted"
setfattr -n user.tczfs.tier -v cold "$M/streams/w" || fail "setfattr tier"
[ "$(js w 'd["tier"], d["pinned"]')" = "cold True" ] || fail "pin: $(js w 'd["tier"], d["pinned"]')"
[ "$(xa "$M/streams/w" tier)" = cold ] || fail "tier xattr after the pin"

# -- removed while open --------------------------------------------------------------
tczfs stream create gone --dim 512 >/dev/null
head -c 4096 "$T/u.raw" | tczfs stream push gone - >/dev/null
mkfifo "$T/go"
$PY "$T/ioerr.py" "$M/streams/gone" read <"$T/go" >"$T/gone.out" &
rpid=$!
exec 4>"$T/go"
sleep 0.3
tczfs stream rm gone
echo >&4
exec 4>&-
wait $rpid
[ "$(cat "$T/gone.out")" = ESTALE ] || fail "a read of a removed stream: $(cat "$T/gone.out")"
ls "$M/streams" | grep -qx gone && fail "a removed stream is still listed"
[ -e "$M/streams/gone" ] && fail "a removed stream can still be looked up"

# -- fsync, then SIGKILL of the daemon ---------------------------------------------------
tczfs stream create k --dim 512 --segment-frames 100 >/dev/null
$PY "$T/w.py" "$M/streams/k" "$T/u.raw" 512 "1,2.5,0.5,rest/100000" "hold=$T/k.synced" &
wpid=$!
for _ in $(seq 200); do
	[ -s "$T/k.synced" ] && break
	sleep 0.05
done
[ "$(cat "$T/k.synced" 2>/dev/null)" = 300 ] || fail "the writer did not fsync"
sleep 0.3 # its last write, not fsynced, reaches the daemon
kill -9 "$(cat "$T/daemon.pid")"
wait "$(cat "$T/daemon.pid")" 2>/dev/null || true
kill "$wpid" 2>/dev/null || true
wait "$wpid" 2>/dev/null || true
fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M"
tczfs verify >"$T/v" || { cat "$T/v"; fail "verify after SIGKILL"; }
mount_store "$M" --stats-interval 1
have=$(stat -c %s "$M/streams/k")
[ "$have" -ge $((300 * 2048)) ] || fail "after SIGKILL: $have bytes, 300 frames were fsynced"
head -c $((300 * 2048)) "$M/streams/k" >"$T/k.out"
$PY "$SP" err "$T/u.raw" "$T/k.out" 512 0.008 >/dev/null || fail "after SIGKILL: frames differ"
$PY - "$M/streams/k.npy" "$T/k.out" <<'PY' || fail "after SIGKILL: the .npy"
import sys, numpy as np
m = np.load(sys.argv[1], mmap_mode="r")
assert m.shape[0] >= 300 and np.array_equal(m[:300], np.fromfile(sys.argv[2], "<f4").reshape(-1, 512))
PY
echo "SIGKILL after fsync: $((have / 2048)) frames after a remount (300 fsynced), verify clean"

# -- a read-only mount -------------------------------------------------------------------
umount_store "$M"
mount_store "$M" -o ro
[ "$(stat -c %a "$M/streams/hot") $(stat -c %a "$M/streams/hot.npy")" = "444 444" ] ||
	fail "modes on a read-only mount: $(stat -c %a "$M/streams/hot")"
[ "$($PY "$T/ioerr.py" "$M/streams/hot" open_w)" = EROFS ] || fail "a writer on a read-only mount"
cmp -s "$M/streams/hot" "$T/hot.out" || fail "reads on a read-only mount"
[ "$(xa "$M/streams/hot" frames)" = 300 ] || fail "xattrs on a read-only mount"
umount_store "$M"

# -- the daemon's background tiering re-encodes a cold stream at 3 bits ----------------
tczfs stream create chill --dim 512 --segment-frames 64 >/dev/null
tczfs stream tier chill hot >/dev/null
head -c $((512 * 4 * 128)) "$T/u.raw" | tczfs stream push chill - >/dev/null
tczfs stream tier chill cold >/dev/null # pinned cold: its 8-bit segments go
mount_store "$M" --tier-interval 1
[ "$(xa "$M/streams/chill" bits)" = 8 ] || fail "chill bits before: $(xa "$M/streams/chill" bits)"
for _ in $(seq 60); do
	[ "$(xa "$M/streams/chill" bits)" = 3 ] && break
	sleep 0.25
done
[ "$(xa "$M/streams/chill" bits)" = 3 ] ||
	fail "background tiering left chill at $(xa "$M/streams/chill" bits) bits"
"$PY" - "$M/streams/chill" "$T/u.raw" <<'PY' || fail "chill after re-encoding: values"
import sys, numpy as np
got = np.fromfile(sys.argv[1], "<f4").reshape(-1, 512)
src = np.fromfile(sys.argv[2], "<f4").reshape(-1, 512)[:got.shape[0]]
assert got.shape[0] == 128
# 3 bits: max error per frame of max|v| within the bound stream.sh holds cold to
err = np.abs(got - src).max(axis=1) / np.maximum(np.abs(src).max(axis=1), 1e-30)
assert err.max() <= 0.30, err.max()  # stream.sh: cold 3 bits, SPEC 6
PY
umount_store "$M"
echo "background tiering: a cold stream's segments re-encoded at 3 bits"
tczfs verify >/dev/null || fail "verify at the end"
echo ok
