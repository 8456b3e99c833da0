#!/bin/bash
# Remotes against a real Ceph cluster (tests/tools/ceph-cluster: one
# monitor, one memstore OSD, started here and stopped in the trap):
# push then pull into a second store (every file identical), objects in
# the pool = unique chunks + manifests + index, a fine-tune uploads only
# its changed tensor's chunks, SIGKILL during a push then push again,
# a corrupted or truncated object fails the pull (hash mismatch, store
# unchanged), two pushes of one model at once, a push racing gc, and a
# hung or stopped cluster fails within the timeout with one line.
. "$(dirname "$0")/lib.sh"

CLUSTER="$SRC_ROOT/tests/tools/ceph-cluster"
for c in ceph-mon ceph-osd ceph rados; do
	command -v "$c" >/dev/null 2>&1 ||
		skip "$c is not installed (ceph-mon ceph-osd ceph-common: tools/deps)"
done
tczfs init --store "$T/probe" >/dev/null
tczfs --store "$T/probe" remote add p rados://p
if tczfs --store "$T/probe" remote models p 2>&1 | grep -q "without librados"; then
	skip "tczfs was built without librados"
fi

C="$T/ceph"
before_cleanup() { "$CLUSTER" stop "$C" >/dev/null 2>&1; }
TCZ_CEPH_TIMEOUT=5 "$CLUSTER" start "$C" >"$T/url" 2>"$T/cluster.err" || {
	cat "$T/cluster.err" >&2
	fail "the test cluster did not start"
}
URL=$(cat "$T/url")
CONF="$C/ceph.conf"
RADOS="rados -c $CONF -p tczfs"
echo "cluster up: $URL ($SECONDS s)"

S1="$T/s1" S2="$T/s2" S3="$T/s3" S4="$T/s4"
for s in "$S1" "$S2" "$S3" "$S4"; do
	tczfs init --store "$s" >/dev/null
	tczfs --store "$s" remote add c "$URL"
done
t1() { tczfs --store "$S1" "$@"; }
t2() { tczfs --store "$S2" "$@"; }
t3() { tczfs --store "$S3" "$@"; }
t4() { tczfs --store "$S4" "$@"; }
nobj() { $RADOS ls | grep -c "^$1" || true; }
nchunks() { mdb_stat -s chunks "$1" | awk '/Entries/ {print $2}'; }

# every file of MODEL, from two stores, byte for byte: the exported source
# files, the merged model.safetensors and (with "all") every layers/*.npy
same_files() { # MODEL STORE_A STORE_B [all]
	m=$1 a=$2 b=$3 all=${4:-}
	rm -rf "$T/xa" "$T/xb"
	tczfs --store "$a" export "$m" -o "$T/xa" >/dev/null
	tczfs --store "$b" export "$m" -o "$T/xb" >/dev/null
	if [ -d "$T/xa" ]; then
		(cd "$T/xa" && find . -type f | sort | xargs sha256sum) >"$T/sa"
		(cd "$T/xb" && find . -type f | sort | xargs sha256sum) >"$T/sb"
	else
		sha256sum <"$T/xa" >"$T/sa"
		sha256sum <"$T/xb" >"$T/sb"
	fi
	cmp -s "$T/sa" "$T/sb" || fail "$m: exported files differ"
	tczfs --store "$a" info "$m" --json |
		"$PY" -c 'import json,sys; [print(t["name"]) for t in json.load(sys.stdin)["tensors"]]' \
			>"$T/tensors"
	[ -s "$T/tensors" ] || fail "$m: no tensors listed"
	[ -n "$all" ] || : >"$T/tensors"
	while read -r tn; do
		for p in "layers/$tn.npy"; do
			ha=$(tczfs --store "$a" cat "$m/$p" | sha256sum)
			hb=$(tczfs --store "$b" cat "$m/$p" | sha256sum)
			[ "$ha" = "$hb" ] || fail "$m/$p differs"
		done
	done <"$T/tensors"
	ha=$(tczfs --store "$a" cat "$m/model.safetensors" | sha256sum)
	hb=$(tczfs --store "$b" cat "$m/model.safetensors" | sha256sum)
	[ "$ha" = "$hb" ] || fail "$m/model.safetensors differs"
}

# ---- push, pull, object counts ------------------------------------------
"$GEN" "$T/base" --size-mb 24 --dtype bf16 --shards 2 --hidden 1024 --seed 3 >/dev/null
t1 import "$T/base" --name base --quiet >/dev/null
t1 push base --quiet >"$T/out" || fail "push base"
cat "$T/out"
chunks=$(nchunks "$S1")
[ "$(nobj c.)" = "$chunks" ] ||
	fail "pool holds $(nobj c.) chunk objects, the store $chunks unique chunks"
[ "$(nobj m.)" = 1 ] || fail "expected one manifest"
[ "$($RADOS ls | wc -l)" = $((chunks + 2)) ] ||
	fail "objects in the pool: $($RADOS ls | wc -l), expected $chunks chunks + manifest + index"
t2 remote models c | grep -q '^base ' || fail "remote models does not list base"
t2 remote models c --json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
assert d["generation"] >= 1 and d["models"][0]["name"] == "base", d' ||
	fail "remote models --json"
t2 pull base --quiet >"$T/out" || fail "pull base"
cat "$T/out"
same_files base "$S1" "$S2" all
for f in "$T"/base/*; do
	[ "$(sha "$f")" = "$(sha "$T/xb/$(basename "$f")")" ] ||
		fail "pulled $(basename "$f") differs from the source"
done
t2 verify base >/dev/null || fail "verify of the pulled model"
echo "push + pull: $chunks chunks, every file identical ($SECONDS s)"

# ---- a fine-tune uploads only its changed tensor -----------------------------
cp -r "$T/base" "$T/ft"
shard=$(ls "$T"/ft/*.safetensors | head -1)
"$PY" - "$shard" <<'PY'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
name = max((k for k in h if k != "__metadata__"),
           key=lambda k: h[k]["data_offsets"][1] - h[k]["data_offsets"][0])
s, e = h[name]["data_offsets"]
for i in range(8 + n + s, 8 + n + e, 2):
    b[i] ^= 1
open(p, "wb").write(b)
print("changed", name)
PY
before_local=$(nchunks "$S1")
t1 import "$T/ft" --name ft --quiet >/dev/null
new_local=$(($(nchunks "$S1") - before_local))
before=$(nobj c.)
t1 push ft --quiet >"$T/out" || fail "push ft"
cat "$T/out"
added=$(($(nobj c.) - before))
echo "fine-tune: $new_local new chunks locally, $added new objects"
[ "$new_local" -gt 0 ] || fail "the fine-tune shares everything?"
[ "$added" = "$new_local" ] ||
	fail "the fine-tune uploaded $added objects, its new chunks are $new_local"
grep -q "already there" "$T/out" || fail "push did not report skipped objects"
t3 pull ft --quiet >/dev/null || fail "pull ft"
same_files ft "$S1" "$S3"

# ---- SIGKILL during a push, then push again ----------------------------------
"$GEN" "$T/big.safetensors" --size-mb 64 --dtype f32 --seed 9 >/dev/null
t1 import "$T/big.safetensors" --name big --quiet >/dev/null
before=$(nobj c.)
# the tczfs process itself (not a subshell), to stop and kill it
"$TCZFS" --store "$S1" push big --jobs 1 --quiet >/dev/null 2>&1 &
pid=$!
stopped=0
for _ in $(seq 400); do
	if [ "$(nobj c.)" -gt $((before + 3)) ]; then
		kill -STOP "$pid" 2>/dev/null && stopped=1
		break
	fi
	sleep 0.02
done
[ "$stopped" = 1 ] || fail "could not catch the push in progress"
partial=$(($(nobj c.) - before))
[ "$(nobj m.big)" = 0 ] || fail "a manifest exists before every object is up"
t2 remote models c | grep -q '^big ' && fail "the index names a half-pushed model"
expect_fail "pull of a half-pushed model" t4 pull big
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
echo "push killed after $partial objects ($SECONDS s)"
t1 push big --quiet >"$T/out" || fail "push after SIGKILL"
cat "$T/out"
grep -qE ", [1-9][0-9]* already there" "$T/out" || fail "the second push re-sent everything"
t4 pull big --quiet >/dev/null || fail "pull after the interrupted push"
same_files big "$S1" "$S4"

# ---- a corrupted or truncated object ----------------------------------------
"$GEN" "$T/solo.safetensors" --size-mb 4 --dtype bf16 --seed 11 >/dev/null
t1 import "$T/solo.safetensors" --name solo --quiet >/dev/null
$RADOS ls | sort >"$T/objs.before"
t1 push solo --quiet >/dev/null || fail "push solo"
$RADOS ls | sort >"$T/objs.after"
victim=$(comm -13 "$T/objs.before" "$T/objs.after" | grep '^c\.' | head -1)
[ -n "$victim" ] || fail "no new object for solo"
$RADOS get "$victim" "$T/victim.orig"
len=$(stat -c %s "$T/victim.orig")
head -c "$len" /dev/urandom >"$T/victim.bad"
$RADOS put "$victim" "$T/victim.bad"
ls3=$(t3 ls)
c3=$(nchunks "$S3")
expect_fail "pull of a corrupted object" t3 pull solo --quiet
grep -q "hash mismatch" "$T/err" || { cat "$T/err" >&2; fail "no hash mismatch message"; }
[ "$(wc -l <"$T/err")" = 1 ] || fail "more than one line: $(cat "$T/err")"
grep -q "$victim" "$T/err" || fail "the message does not name the object"
[ "$(t3 ls)" = "$ls3" ] || fail "the store changed after a failed pull"
[ "$(nchunks "$S3")" = "$c3" ] || fail "chunks left behind by a failed pull"
t3 verify >/dev/null || fail "verify after a failed pull"
head -c $((len / 2)) "$T/victim.orig" >"$T/victim.short"
$RADOS put "$victim" "$T/victim.short"
expect_fail "pull of a truncated object" t3 pull solo --quiet
grep -q "truncated" "$T/err" || { cat "$T/err" >&2; fail "no truncation message"; }
[ "$(t3 ls)" = "$ls3" ] || fail "the store changed after a failed pull"
# a push of the same model does not mend an object of the right length
# but repairs a short one (stat sees its length)
t1 push solo --quiet >/dev/null || fail "push solo again"
t3 pull solo --quiet >/dev/null || fail "pull after the truncated object was rewritten"
echo "corrupt and truncated objects: refused, store unchanged ($SECONDS s)"

# ---- two pushes of one model at once ------------------------------------------
"$GEN" "$T/twin.safetensors" --size-mb 16 --dtype bf16 --seed 21 >/dev/null
t1 import "$T/twin.safetensors" --name twin --quiet >/dev/null
t2 import "$T/twin.safetensors" --name twin --quiet >/dev/null
t1 push twin --quiet >"$T/p1.out" 2>&1 &
p1=$!
t2 push twin --quiet >"$T/p2.out" 2>&1 &
p2=$!
wait "$p1" || { cat "$T/p1.out" >&2; fail "first concurrent push"; }
wait "$p2" || { cat "$T/p2.out" >&2; fail "second concurrent push"; }
t4 pull twin --quiet >/dev/null || fail "pull after concurrent pushes"
same_files twin "$S1" "$S4"
[ "$(t4 remote models c | grep -c '^twin ')" = 1 ] || fail "twin listed twice"

# ---- a push racing gc -----------------------------------------------------------
# race's objects exist but nothing references them (dropped), and were
# touched before gc starts: gc --grace 0 may delete any of them unless the
# push protects it. gc runs in a loop while race is pushed again.
# the lease the killed push left is "live" for 60 s and would make gc
# spare everything touched since; it is dead, take it away
for l in $($RADOS ls | grep '^l\.'); do $RADOS rm "$l"; done
"$GEN" "$T/race.safetensors" --size-mb 32 --dtype bf16 --seed 31 >/dev/null
t3 import "$T/race.safetensors" --name race --quiet >/dev/null
t3 push race --quiet >/dev/null || fail "push race"
t3 remote drop c race || fail "remote drop"
t3 remote models c | grep -q '^race ' && fail "race still listed after drop"
sleep 0.1
(
	for _ in $(seq 40); do
		t1 remote gc c --grace 0 >>"$T/gc.out" 2>&1 || echo "gc failed" >>"$T/gc.out"
	done
) &
gcpid=$!
sleep 0.05
t3 push race --jobs 4 --quiet >"$T/out" 2>&1 || { cat "$T/out" >&2; fail "push racing gc"; }
wait "$gcpid"
grep -q "gc failed" "$T/gc.out" && { cat "$T/gc.out" >&2; fail "a gc failed"; }
grep -q "^gc:" "$T/gc.out" || fail "gc did not run"
[ "$(awk '/^gc:/ {d+=$7} END {print d}' "$T/gc.out")" -gt 0 ] ||
	fail "gc deleted nothing while racing: the race was not exercised"
echo "gc during the push: $(grep -c '^gc:' "$T/gc.out") runs, $(awk '/^gc:/ {d+=$7} END {print d}' "$T/gc.out") objects deleted"
t1 remote gc c --grace 0 >"$T/out" || fail "gc after the push"
cat "$T/out"
t2 pull race --quiet >/dev/null || fail "pull after racing gc: a chunk was lost"
same_files race "$S3" "$S2"
# everything pushed is still whole
t4 rm twin big
for m in base ft big twin solo; do
	t4 rm "$m" >/dev/null 2>&1 || true
done
for m in base ft big twin; do
	t4 pull "$m" --quiet >/dev/null || fail "pull $m after gc"
done
t4 verify >/dev/null || fail "verify after pulling everything"
# unreferenced objects do go: drop solo, gc --grace 0 frees its chunks
t1 remote drop c solo
t1 remote gc c --grace 0 --dry-run >"$T/out"
grep -q "would be deleted" "$T/out" || fail "dry run"
n=$(nobj c.)
t1 remote gc c --grace 0 >"$T/out"
[ "$(nobj c.)" -lt "$n" ] || fail "gc freed nothing of the dropped model"
[ "$(nobj m.solo.)" = 0 ] || fail "gc left the dropped model's manifest"
echo "gc: $(cat "$T/out")"
# a re-push with other content writes a new manifest and then points the
# index at it (hosts read one or the other, whole); gc removes the old one
"$GEN" "$T/rp1" --size-mb 1 --dtype f32 --hidden 64 --seed 21 >/dev/null
"$GEN" "$T/rp2" --size-mb 1 --dtype f32 --hidden 64 --seed 22 >/dev/null
t1 import "$T/rp1" --name rp --quiet >/dev/null
t1 push rp --quiet >/dev/null
t1 rm rp >/dev/null
t1 import "$T/rp2" --name rp --quiet >/dev/null
t1 push rp --quiet >/dev/null
[ "$(nobj m.rp.)" = 2 ] || fail "re-push: $(nobj m.rp.) manifests, expected 2 before gc"
t4 pull rp --quiet >/dev/null || fail "pull of the re-pushed model"
[ "$(t4 cat rp/model.safetensors | sha256sum)" = "$(sha256sum <"$T/rp2/model.safetensors")" ] ||
	fail "the pull after a re-push is not the new content"
t1 remote gc c --grace 0 >"$T/out"
grep -q " 1 replaced or dropped manifests deleted" "$T/out" || fail "gc: $(cat "$T/out")"
[ "$(nobj m.rp.)" = 1 ] || fail "gc left $(nobj m.rp.) manifests of rp"
t4 rm rp >/dev/null
t4 pull rp --quiet >/dev/null || fail "pull after gc of the old manifest"
echo "re-push: old manifest kept until gc, then removed"

# ---- a hung cluster, then a stopped one ----------------------------------------
"$CLUSTER" pause "$C"
start=$(date +%s%N)
expect_fail "pull while the cluster hangs" t3 pull big --timeout 2 --quiet
el=$((($(date +%s%N) - start) / 1000000))
[ "$(wc -l <"$T/err")" = 1 ] || fail "more than one line: $(cat "$T/err")"
grep -q "no answer" "$T/err" || { cat "$T/err" >&2; fail "no timeout message"; }
[ "$el" -lt 8000 ] || fail "pull took $el ms with a 2 s timeout"
echo "hung cluster: pull failed in $el ms: $(cat "$T/err")"
"$CLUSTER" resume "$C"
t3 pull big --quiet >/dev/null || fail "pull after the cluster came back"
"$CLUSTER" stop "$C"
for cmd in "t1 push base --timeout 2 --quiet" "t4 pull solo --timeout 2 --quiet" \
	"t1 remote models c --timeout 2" "t1 remote gc c --timeout 2"; do
	start=$(date +%s%N)
	# shellcheck disable=SC2086
	expect_fail "$cmd with the cluster stopped" $cmd
	el=$((($(date +%s%N) - start) / 1000000))
	[ "$(wc -l <"$T/err")" = 1 ] || fail "$cmd: more than one line: $(cat "$T/err")"
	[ "$el" -lt 8000 ] || fail "$cmd took $el ms with a 2 s timeout"
	echo "stopped cluster: $cmd: $el ms: $(cat "$T/err")"
done
echo ok
