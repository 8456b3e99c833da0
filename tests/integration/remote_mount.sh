#!/bin/bash
# A mount serving a remote's models (Ceph RADOS, tests/tools/ceph-cluster)
# next to its local ones: every file of a pushed model read through the
# mount of another store is byte-identical to the source files; fetched
# chunks land in the bounded disk cache and serve reads while the
# cluster hangs; a new push shows up without a remount, a re-push with
# other content replaces the files; a corrupted object is EIO for that
# model only and is never cached; a hung cluster fails a read within
# --remote-timeout; the fstab entry point (mount.fuse.tczfs STORE MNT -o)
# mounts read-only with remote= and cache_mb=.
. "$(dirname "$0")/lib.sh"

CLUSTER="$SRC_ROOT/tests/tools/ceph-cluster"
for c in ceph-mon ceph-osd ceph rados mdb_stat; do
	command -v "$c" >/dev/null 2>&1 ||
		skip "$c is not installed (ceph-mon ceph-osd ceph-common lmdb-utils: tools/deps)"
done
[ -c /dev/fuse ] || skip "no /dev/fuse"
"$PY" -c "import lmdb" 2>/dev/null || skip "python3-lmdb is not installed (tools/deps)"
tczfs init --store "$T/probe" >/dev/null
tczfs --store "$T/probe" remote add p rados://p
if tczfs --store "$T/probe" remote models p 2>&1 | grep -q "without librados"; then
	skip "tczfs was built without librados"
fi

C="$T/ceph"
before_cleanup() {
	"$CLUSTER" resume "$C" >/dev/null 2>&1 || true
	"$CLUSTER" stop "$C" >/dev/null 2>&1
}
TCZ_CEPH_TIMEOUT=5 "$CLUSTER" start "$C" >"$T/url" 2>"$T/cluster.err" || {
	cat "$T/cluster.err" >&2
	fail "the test cluster did not start"
}
URL=$(cat "$T/url")
RADOS="rados -c $C/ceph.conf -p tczfs"
echo "cluster up ($SECONDS s)"

S1="$T/s1" S2="$T/s2"
for s in "$S1" "$S2"; do
	tczfs init --store "$s" >/dev/null
	tczfs --store "$s" remote add c "$URL"
done
t1() { tczfs --store "$S1" "$@"; }
t2() { tczfs --store "$S2" "$@"; }

# the model pushed from S1, and a local one of S2
"$GEN" "$T/base" --size-mb 12 --dtype bf16 --shards 2 --hidden 512 --seed 3 >/dev/null
t1 import "$T/base" --name base --quiet >/dev/null
t1 push base --remote c >/dev/null
"$GEN" "$T/loc" --size-mb 2 --dtype f32 --hidden 256 --seed 4 >/dev/null
t2 import "$T/loc" --name loc --quiet >/dev/null

# same_as_source DIR MODEL_DIR: every source file byte-identical
same_as_source() { # SRC DIR: every file of SRC has the same sha256 in DIR
	# files of their own: the four-daemon check runs several of these at once
	w=$(mktemp "$T/want.XXXXXX") g=$(mktemp "$T/got.XXXXXX")
	(cd "$1" && find . -type f | sort | xargs sha256sum) >"$w"
	(cd "$1" && find . -type f | sort) | (cd "$2" && xargs sha256sum) >"$g"
	diff "$w" "$g" >&2 || fail "$2 differs from $1"
	rm -f "$w" "$g"
}

listed_within_15s() { # MODEL: the mount at $M lists it within 15 s
	for _ in $(seq 60); do
		[ -d "$M/$1" ] && return 0
		sleep 0.25
	done
	return 1
}

M="$T/mnt"
mount_store "$M" --store "$S2" --remote c --cache-mb 4 --hot-mb 0 \
	--disk-cache-gb 0.5 --remote-timeout 3 --log "$T/daemon.log"
ls "$M" >"$T/ls"
grep -qx base "$T/ls" || fail "the remote's model is not listed: $(cat "$T/ls")"
grep -qx loc "$T/ls" || fail "the local model is not listed"
same_as_source "$T/base" "$M/base"
same_as_source "$T/loc" "$M/loc"
# the merged view and a layer, against the pushing store's own
[ "$(sha256sum <"$M/base/model.safetensors")" = \
  "$(t1 cat base/model.safetensors | sha256sum)" ] ||
	fail "model.safetensors differs from the pushing store's"
L=$(ls "$M/base/layers" | head -1)
[ "$(sha256sum <"$M/base/layers/$L")" = "$(t1 cat "base/layers/$L" | sha256sum)" ] ||
	fail "layers/$L differs from the pushing store's"
"$PY" -c "import numpy,sys; a=numpy.load(sys.argv[1], mmap_mode='r'); assert a.size>0" \
	"$M/base/layers/$L" || fail "numpy cannot load layers/$L from the mount"
echo "remote model read through the mount: identical ($SECONDS s)"

# fetched chunks are kept in the disk cache (written within a second)
for _ in $(seq 40); do
	n=$(mdb_stat -s rcache "$S2" 2>/dev/null | awk '/Entries/ {print $2}')
	[ "${n:-0}" -gt 0 ] && break
	sleep 0.25
done
[ "${n:-0}" -gt 0 ] || fail "no fetched chunk was kept in the disk cache"
t2 ls | grep -q '^base' && fail "reading a remote model imported it"

# the cluster hangs: what was read is served from the disk cache
"$CLUSTER" pause "$C"
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
same_as_source "$T/base" "$M/base"
"$CLUSTER" resume "$C"
echo "disk cache serves a hung cluster's chunks ($SECONDS s)"

# a new push shows up without a remount; a re-push replaces the content
"$GEN" "$T/new" --size-mb 2 --dtype bf16 --hidden 256 --seed 5 >/dev/null
t1 import "$T/new" --name fresh --quiet >/dev/null
t1 push fresh --remote c >/dev/null
listed_within_15s fresh || fail "a new push did not appear within 15 s"
same_as_source "$T/new" "$M/fresh"
"$GEN" "$T/new2" --size-mb 2 --dtype bf16 --hidden 256 --seed 6 >/dev/null
t1 rm fresh >/dev/null
t1 import "$T/new2" --name fresh --quiet >/dev/null
t1 push fresh --remote c >/dev/null
want=$(sha256sum <"$T/new2/model.safetensors")
for _ in $(seq 60); do
	[ "$(sha256sum <"$M/fresh/model.safetensors" 2>/dev/null)" = "$want" ] && break
	sleep 0.25
done
[ "$(sha256sum <"$M/fresh/model.safetensors")" = "$want" ] ||
	fail "a re-push with other content did not replace the files"
echo "pushes appear and replace without a remount ($SECONDS s)"

# a local model of the same name wins over the remote's
"$GEN" "$T/shadow" --size-mb 1 --dtype f32 --hidden 128 --seed 7 >/dev/null
t2 import "$T/shadow" --name fresh --quiet >/dev/null
for _ in $(seq 40); do
	[ "$(sha256sum <"$M/fresh/model.safetensors")" = \
	  "$(sha256sum <"$T/shadow/model.safetensors")" ] && break
	sleep 0.25
done
same_as_source "$T/shadow" "$M/fresh"
[ "$(ls "$M" | grep -cx fresh)" = 1 ] || fail "fresh listed twice"

# a corrupted object: EIO for that model's reads only, never cached
$RADOS ls | sort >"$T/objs0"
"$GEN" "$T/bad" --size-mb 2 --dtype f32 --hidden 256 --seed 8 >/dev/null
t1 import "$T/bad" --name bad --quiet >/dev/null
t1 push bad --remote c >/dev/null
$RADOS ls | sort >"$T/objs1"
comm -13 "$T/objs0" "$T/objs1" | grep '^c\.' >"$T/badobjs" ||
	fail "the push of bad uploaded no chunk"
while read -r o; do
	head -c 4096 /dev/urandom >"$T/junk"
	$RADOS put "$o" "$T/junk"
done <"$T/badobjs"
listed_within_15s bad || fail "bad did not appear"
if cat "$M/bad/model.safetensors" >/dev/null 2>"$T/err"; then
	fail "a read of corrupted remote chunks succeeded"
fi
grep -q "Input/output error" "$T/err" || fail "not EIO: $(cat "$T/err")"
if cat "$M/bad/model.safetensors" >/dev/null 2>&1; then
	fail "a corrupted chunk was cached and served"
fi
same_as_source "$T/base" "$M/base"
echo "corrupted objects: EIO for that model only ($SECONDS s)"

# a hung cluster: a read of what is not cached fails within the timeout
"$GEN" "$T/late" --size-mb 2 --dtype f32 --hidden 256 --seed 9 >/dev/null
t1 import "$T/late" --name late --quiet >/dev/null
t1 push late --remote c >/dev/null
listed_within_15s late || fail "late did not appear"
"$CLUSTER" pause "$C"
t0=$SECONDS
if timeout 60 cat "$M/late/model.safetensors" >/dev/null 2>"$T/err"; then
	fail "a read from a hung cluster succeeded"
fi
el=$((SECONDS - t0))
[ "$el" -le 30 ] || fail "a read from a hung cluster took $el s (timeout 3 s)"
same_as_source "$T/loc" "$M/loc" # local models are unaffected
"$CLUSTER" resume "$C"
echo "hung cluster: the read failed after $el s, local models served ($SECONDS s)"
for _ in $(seq 40); do
	cmp -s "$M/late/model.safetensors" "$T/late/model.safetensors" && break
	sleep 0.5
done
same_as_source "$T/late" "$M/late"
umount_store "$M"
grep -E "Sanitizer|runtime error" "$T/daemon.log" && fail "sanitizer report"

# a disk cache much smaller than the model stays within its bound, and
# four daemons with stores and caches of their own read it at once
rcache_bytes() { # STORE: bytes of the values in its disk cache
	"$PY" -c '
import lmdb, sys
env = lmdb.open(sys.argv[1], readonly=True, lock=False, max_dbs=64, subdir=True)
try:
    db = env.open_db(b"rcache", create=False)
except lmdb.NotFoundError:
    print(0); sys.exit(0)
with env.begin(db=db) as tx:
    print(sum(len(v) for _, v in tx.cursor()))' "$1"
}
pids=""
for k in 1 2 3 4; do
	s="$T/h$k"
	tczfs init --store "$s" >/dev/null
	tczfs --store "$s" remote add c "$URL"
	mkdir -p "$T/m$k"
	"$TCZFS" mount "$T/m$k" -f --store "$s" --remote c --cache-mb 4 \
		--hot-mb 0 --disk-cache-gb 0.003 --log "$T/d$k.log" 2>>"$T/d$k.log" &
	echo $! >"$T/d$k.pid"
done
for k in 1 2 3 4; do
	for _ in $(seq 100); do
		grep -qs " $T/m$k fuse.tczfs " /proc/mounts && break
		sleep 0.05
	done
done
for k in 1 2 3 4; do
	(same_as_source "$T/base" "$T/m$k/base" && echo ok >"$T/r$k") &
	pids="$pids $!"
done
for p in $pids; do wait "$p" || true; done
for k in 1 2 3 4; do
	[ -s "$T/r$k" ] || fail "daemon $k of four read wrong bytes"
done
sleep 1.5 # the deferred cache writes
for k in 1 2 3 4; do
	b=$(rcache_bytes "$T/h$k")
	[ "$b" -gt 0 ] || fail "host $k kept nothing in its disk cache"
	[ "$b" -le 3221226 ] || fail "host $k's disk cache holds $b bytes (bound 3 MiB)"
done
for k in 1 2 3 4; do tczfs umount "$T/m$k"; done
echo "four daemons, 3 MiB disk caches, 12 MB model: identical, bounded ($SECONDS s)"

# the fstab entry point: STORE MNT -o ro,remote=NAME,cache_mb=N
M2="$T/mnt2"
mkdir -p "$M2"
HELPER="$T/mount.fuse.tczfs"
ln -s "$TCZFS" "$HELPER"
"$HELPER" "$S2" "$M2" -o ro,remote=c,cache_mb=64,nodev,nosuid,noauto,_netdev,log="$T/d2.log" ||
	fail "mount.fuse.tczfs failed"
grep -qs " $M2 fuse.tczfs ro," /proc/mounts || fail "not mounted read-only"
same_as_source "$T/base" "$M2/base"
if touch "$M2/x" 2>/dev/null; then fail "a read-only mount took a new file"; fi
expect_fail "an unknown mount option" "$HELPER" "$S2" "$T/mnt3" -o bogus=1
tczfs umount "$M2"
for _ in $(seq 100); do
	grep -qs " $M2 " /proc/mounts || break
	sleep 0.1
done
echo "fstab entry point mounts with remote= ($SECONDS s)"
