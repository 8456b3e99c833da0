#!/bin/bash
# Temporal streams through the command line (SPEC 6, 7; issue 10 without
# the mount):
# - the SPEC 6 acceptance, pinned per tier with `stream tier`: N 512, G 64,
#   100 frames per segment; ratios from the stored segment bytes, errors
#   per frame computed by NumPy from `stream cat` against what was pushed;
# - drift on hand-built frames, the expected segments written here;
# - --from/--to exact, --frames, .npy in and out, float16 input;
# - a reader process running while a writer process appends sees whole
#   frames, each the right one;
# - a writer killed with SIGKILL mid-append: the store opens, every
#   flushed frame is there, verify is clean, the stream takes a writer;
# - a cold stream (pinned, or by its score under TCZFS_NOW) re-encoded to
#   3 bits by `tier run`, still readable within the 3-bit bound;
# - bad input: one line, nothing stored.
. "$(dirname "$0")/lib.sh"
: "${STREAM_APPEND:?STREAM_APPEND must point at tests/tools/stream_append}"
SP="$SRC_ROOT/tests/integration/streams.py"
js() { # js NAME EXPR: EXPR over `stream info NAME --json` as d
	tczfs stream info "$1" --json | $PY -c "import json,sys; d=json.load(sys.stdin); print($2)"
}

tczfs init >/dev/null
tczfs stream --help | grep -q "usage: tczfs stream create" || fail "stream --help"
tczfs --help | grep -q "stream" || fail "stream missing from tczfs --help"

# -- SPEC 6 acceptance ---------------------------------------------------------
$PY "$SP" uniform "$T/u.raw" 300 512 1
# name tier warm-bits bits ratio error
while read -r name tier warm bits ratio bound; do
	tczfs stream create "$name" --dim 512 --group 64 --warm-bits "$warm" \
		--segment-frames 100 >/dev/null
	tczfs stream tier "$name" "$tier" >/dev/null
	tczfs stream push "$name" "$T/u.raw" --ts 1000 --interval-ms 100 >/dev/null
	[ "$(js "$name" 'd["frames"], d["segments"], d["tier"]')" = "300 3 $tier" ] ||
		fail "$name: $(js "$name" 'd["frames"], d["segments"], d["tier"]')"
	[ "$(js "$name" 'sorted({(s["frames"], s["bits"]) for s in d["segment_list"]})')" = "[(100, $bits)]" ] ||
		fail "$name: segments $(js "$name" 'd["segment_list"]')"
	# counted from the stored segment bytes
	r=$(js "$name" '"%.4f" % (d["f32_bytes"] / d["stored_bytes"])')
	$PY -c "assert $r >= $ratio, ($r, $ratio)" || fail "$name: ratio $r < $ratio"
	tczfs stream cat "$name" -o "$T/$name.out"
	e=$($PY "$SP" err "$T/u.raw" "$T/$name.out" 512 "$bound") ||
		fail "$name: max error per frame $e, bound $bound"
	echo "$name: $bits bits, ${r}x, max error per frame ${e} of max|v| (bound $bound)"
done <<EOF
hot hot 7 8 3.99 0.008
warm warm 7 7 4.56 0.016
warm5 warm 5 5 6.38 0.065
cold cold 7 3 10.63 0.30
EOF

# -- drift -------------------------------------------------------------------------
tczfs stream create d --dim 64 >/dev/null
tczfs stream tier d hot >/dev/null
starts=$($PY "$SP" drift "$T/d.raw")
[ "$starts" = "0 3 6 8" ] || fail "drift frames: starts $starts"
tczfs stream push d "$T/d.raw" --ts 0 --interval-ms 1 >/dev/null
got=$(js d '" ".join(str(s["first_frame"]) for s in d["segment_list"])')
[ "$got" = "0 3 6 8" ] || fail "drift: segments start at $got, want 0 3 6 8"

# -- time ranges, frame ranges, npy ---------------------------------------------------
tczfs stream create t --dim 512 --segment-frames 16 >/dev/null
$PY "$SP" uniform "$T/t.raw" 40 512 2
tczfs stream push t "$T/t.raw" --ts 1000 --interval-ms 10 >/dev/null # 1000..1390
$PY "$SP" uniform "$T/t2.raw" 5 512 3
tczfs stream push t "$T/t2.raw" --ts 1390 --interval-ms 0 >/dev/null  # 40..44 at 1390
frames() { echo $(($(stat -c %s "$1") / 2048)); }
rng() { # rng OUT ARGS...: cat with ARGS, prints the frame count
	tczfs stream cat t "${@:2}" -o "$1" && frames "$1"
}
[ "$(rng "$T/a" --from 1050 --to 1100)" = 6 ] || fail "--from 1050 --to 1100"
rng "$T/b" --frames 5:11 >/dev/null
cmp -s "$T/a" "$T/b" || fail "--from 1050 --to 1100 is not frames 5..10"
[ "$(rng "$T/a" --from 1051 --to 1099)" = 4 ] || fail "--from between frames"
[ "$(rng "$T/a" --from 1390)" = 6 ] || fail "--from at the repeated timestamp"
rng "$T/b" --frames 39: >/dev/null
cmp -s "$T/a" "$T/b" || fail "--from 1390 is not frames 39.."
[ "$(rng "$T/a" --to 999)" = 0 ] || fail "--to before the first frame"
[ "$(rng "$T/a" --from 2000)" = 0 ] || fail "--from after the last frame"
[ "$(rng "$T/a" --to 1000)" = 1 ] || fail "--to at the first frame"
[ "$(rng "$T/a" --from 1000 --to 1390 --frames 2:4)" = 2 ] || fail "--frames within --from/--to"
[ "$(rng "$T/a" --frames :7)" = 7 ] || fail "--frames :7"
tczfs stream cat t --format npy -o "$T/t.npy"
tczfs stream cat t -o "$T/t.out"
$PY - "$T/t.npy" "$T/t.out" <<'PY' || fail "--format npy"
import sys, numpy as np
a = np.load(sys.argv[1]); b = np.fromfile(sys.argv[2], "<f4").reshape(-1, 512)
assert a.dtype == np.float32 and a.shape == (45, 512) and np.array_equal(a, b)
assert np.load(sys.argv[1], mmap_mode="r").shape == (45, 512)
PY
# .npy in: float32 [F, N], float16, one frame [N]
tczfs stream create n --dim 512 >/dev/null
tczfs stream tier n hot >/dev/null
$PY - "$T" <<'PY'
import sys, numpy as np
v = np.fromfile(sys.argv[1] + "/u.raw", "<f4").reshape(-1, 512)[:10]
np.save(sys.argv[1] + "/f32.npy", v)
np.save(sys.argv[1] + "/f16.npy", v.astype("<f2"))
np.save(sys.argv[1] + "/one.npy", v[0])
v.astype("<f2").astype("<f4").tofile(sys.argv[1] + "/f16.raw")
PY
tczfs stream push n "$T/f32.npy" >/dev/null
tczfs stream push n "$T/f16.npy" >/dev/null
tczfs stream push n "$T/one.npy" >/dev/null
[ "$(js n 'd["frames"]')" = 21 ] || fail ".npy pushes: $(js n 'd["frames"]') frames"
tczfs stream cat n --frames 10:20 -o "$T/n16.out"
$PY "$SP" err "$T/f16.raw" "$T/n16.out" 512 0.008 >/dev/null || fail "float16 push"
# standard input
head -c $((2048 * 3)) "$T/u.raw" | tczfs stream push n - >/dev/null
[ "$(js n 'd["frames"]')" = 24 ] || fail "push from standard input"

# -- a reader process while a writer process appends ------------------------------------
tczfs stream create live --dim 512 --segment-frames 20 >/dev/null
tczfs stream tier live hot >/dev/null
"$STREAM_APPEND" "$TCZFS_STORE" live 3 3000 "$T/live.progress" &
wpid=$!
reads=0
while kill -0 $wpid 2>/dev/null; do
	tczfs stream cat live -o "$T/live.out" || fail "cat while appending"
	$PY "$SP" pattern "$T/live.out" 512 0 >/dev/null || fail "a reader saw a torn or wrong frame"
	reads=$((reads + 1))
done
wait $wpid || fail "the writer failed"
[ "$(js live 'd["frames"]')" = 3000 ] || fail "live: $(js live 'd["frames"]') frames"
echo "live: $reads whole reads while appending"

# -- SIGKILL of a writer mid-append ------------------------------------------------------
tczfs stream create k --dim 512 --segment-frames 50 >/dev/null
tczfs stream tier k hot >/dev/null
"$STREAM_APPEND" "$TCZFS_STORE" k 7 100000000 "$T/k.progress" &
kpid=$!
for _ in $(seq 200); do
	[ -s "$T/k.progress" ] && [ "$(cat "$T/k.progress")" -ge 300 ] && break
	sleep 0.05
done
kill -9 $kpid
wait $kpid 2>/dev/null || true
flushed=$(cat "$T/k.progress")
[ "$flushed" -ge 300 ] || fail "the writer did not get going ($flushed frames)"
tczfs verify >"$T/v" || { cat "$T/v"; fail "verify after SIGKILL"; }
have=$(js k 'd["frames"]')
[ "$have" -ge "$flushed" ] || fail "after SIGKILL: $have frames, $flushed were flushed"
[ $((have % 7)) = 0 ] || fail "after SIGKILL: $have frames, not a flush's worth"
tczfs stream cat k -o "$T/k.out"
[ "$($PY "$SP" pattern "$T/k.out" 512 0)" = "$have" ] || fail "after SIGKILL: frames differ"
# the dead writer's lock went with it
"$STREAM_APPEND" "$TCZFS_STORE" k 7 $((have + 7)) "$T/k2.progress" ||
	fail "no writer after SIGKILL"
echo "SIGKILL: $flushed frames flushed, $have stored, verify clean"

# -- a cold stream re-encoded to 3 bits ----------------------------------------------------
tczfs stream create c --dim 512 --segment-frames 100 >/dev/null
tczfs stream tier c hot >/dev/null
tczfs stream push c "$T/u.raw" --ts 0 --interval-ms 100 >/dev/null
tczfs tier run --quiet | grep -q "0 segments re-encoded" || fail "tier run re-encoded a hot stream"
tczfs stream tier c cold >/dev/null
tczfs tier run c --quiet | grep -q "3 segments re-encoded to 3 bits" || fail "tier run c"
[ "$(js c 'sorted({s["bits"] for s in d["segment_list"]})')" = "[3]" ] ||
	fail "c: widths $(js c '[s["bits"] for s in d["segment_list"]]')"
tczfs stream cat c -o "$T/c.out"
e=$($PY "$SP" err "$T/u.raw" "$T/c.out" 512 0.30) || fail "c re-encoded: error $e"
echo "c: 8 -> 3 bits, max error per frame $e"
tczfs tier run c --quiet | grep -q "0 segments re-encoded" || fail "re-encoded twice"
# by the score alone: written at t=1000 (one access), cold 16 s later
echo 1000 >"$T/clock"
tczfs stream create sc --dim 512 --segment-frames 100 >/dev/null
TCZFS_NOW="@$T/clock" tczfs stream push sc "$T/u.raw" --ts 0 >/dev/null
[ "$(js sc 'd["segment_list"][0]["bits"]')" = 8 ] || fail "a new stream is not written hot"
echo 1010 >"$T/clock"
TCZFS_NOW="@$T/clock" tczfs tier run sc --quiet | grep -q " 0 cold" || fail "sc cold at 1010"
echo 1016 >"$T/clock" # 1024 / 17 = 60 < 64
TCZFS_NOW="@$T/clock" tczfs tier run sc --quiet | grep -q "3 segments re-encoded" ||
	fail "sc not re-encoded at 1016"
tczfs verify >"$T/v" || { cat "$T/v"; fail "verify after re-encoding"; }

# -- bad input: one line, nothing stored -----------------------------------------------
# the tier column comes from a time-based score: compare the rest
streams_state() { tczfs stream ls -l | awk '{$NF=""; print}' | md5sum; }
before=$(streams_state)
code() { "$@" >/dev/null 2>"$T/err" && echo 0 || echo $?; }
one_line() { [ "$(wc -l <"$T/err")" = 1 ] || fail "$1: not one line: $(cat "$T/err")"; }
[ "$(code tczfs stream create z --dim 0)" = 1 ] || fail "--dim 0"
one_line "--dim 0"
[ "$(code tczfs stream create a/b --dim 4)" = 1 ] || fail "a name with /"
one_line "a name with /"
[ "$(code tczfs stream create z)" = 2 ] || fail "create without --dim"
head -c 3000 "$T/u.raw" >"$T/bad.raw"
[ "$(code tczfs stream push hot "$T/bad.raw")" = 1 ] || fail "a push of 3000 bytes"
one_line "a push of 3000 bytes"
grep -q "not a whole number of frames" "$T/err" || fail "message: $(cat "$T/err")"
$PY -c "import numpy as np; np.save('$T/w.npy', np.zeros((3, 100), '<f4'))"
[ "$(code tczfs stream push hot "$T/w.npy")" = 1 ] || fail "a .npy of the wrong width"
one_line "a .npy of the wrong width"
$PY -c "import numpy as np; np.save('$T/d.npy', np.zeros((3, 512), '<f8'))"
[ "$(code tczfs stream push hot "$T/d.npy")" = 1 ] || fail "a float64 .npy"
$PY -c "import numpy as np; v=np.zeros((3, 512), '<f4'); v[2, 7]=np.nan; v.tofile('$T/nan.raw')"
[ "$(code tczfs stream push hot "$T/nan.raw")" = 1 ] || fail "a NaN"
one_line "a NaN"
[ "$(code tczfs stream push nope "$T/u.raw")" = 1 ] || fail "push to an unknown stream"
one_line "push to an unknown stream"
for sub in info cat rm; do
	[ "$(code tczfs stream $sub nope)" = 1 ] || fail "$sub of an unknown stream"
	one_line "$sub of an unknown stream"
done
[ "$(code tczfs stream tier nope cold)" = 1 ] || fail "tier of an unknown stream"
[ "$(code tczfs stream push hot "$T/u.raw" --ts 5)" = 1 ] || fail "a timestamp going back"
one_line "a timestamp going back"
[ "$(streams_state)" = "$before" ] || fail "bad input stored something"
tczfs verify >/dev/null || fail "verify at the end"
tczfs stream rm hot warm
tczfs stream ls | grep -qx hot && fail "rm"
tczfs verify >/dev/null || fail "verify after rm"
echo ok
