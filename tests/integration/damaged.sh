#!/bin/bash
# A corpus of damaged stores: for each kind of damage (a flipped byte in one
# record of each table, a truncated data.mdb, a foreign LMDB environment, an
# unreadable store), every tczfs command is run on a fresh copy of the
# damaged store. Rules, per command:
#   - exit status < 128 (no signal), no crash or sanitizer text on stderr,
#     no hang (60 s);
#   - on failure exactly one line on stderr, starting with "tczfs:"; for the
#     unreadable store that line says "permission denied", not "no store";
#   - verify reports the damage: either exactly one "BAD" line on stdout
#     (naming model a when the damage is in one of a's records, and the
#     tensor when it is in a tensor record or chunk), nothing on stderr and
#     exit status 1, or (when the store cannot be opened) the one-line
#     failure above; verify a does the same when the damage is a's, and may
#     pass when the damage is store-wide;
#   - nothing ever gives wrong bytes: an export that succeeds equals the
#     source, a read through the mount is a prefix of the source and fails
#     only with EIO; b reads back exactly unless the damage is store-wide.
# Prints the whole table (damage x command), then fails listing every cell
# that broke a rule.
. "$(dirname "$0")/lib.sh"
: "${CORRUPT_RECORD:?CORRUPT_RECORD must point at the corrupt_record helper}"
CR=$CORRUPT_RECORD
ulimit -c 0 # the crashes this test looks for must not leave core files

# nobody must be able to reach $T/store (to find it unreadable there) and to
# read the import source and write the export target
chmod 711 "$T"
SRC="$T/src"
X="$T/x"
mkdir -m 755 "$SRC"
mkdir -m 1777 "$X"
mkdir -m 755 "$T/bin"
cp "$TCZFS" "$T/bin/tczfs" # the build tree may be out of nobody's reach
chmod 755 "$T/bin/tczfs"
AS_NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
"${AS_NOBODY[@]}" "$T/bin/tczfs" --version >/dev/null ||
	skip "cannot run tczfs as nobody"

"$GEN" "$SRC/a.safetensors" --size-mb 3 --seed 1
"$GEN" "$SRC/b.safetensors" --size-mb 3 --seed 2
"$GEN" "$SRC/c.safetensors" --size-mb 1 --seed 3
chmod 644 "$SRC"/*

# ---- the pristine store: b, then a, then a's access statistics ------------
BASE="$T/base"
export TCZFS_STORE="$BASE"
tczfs init >/dev/null
tczfs import "$SRC/b.safetensors" --name b --quiet >/dev/null
for t in tensors chunks refs aux; do "$CR" "$BASE" --keys $t >"$T/keys.b.$t"; done
tczfs import "$SRC/a.safetensors" --name a --quiet >/dev/null
mount_store "$T/mnt" --cache-mb 16
cmp -s "$T/mnt/a/model.safetensors" "$SRC/a.safetensors" || fail "setup: a reads back wrong"
umount_store "$T/mnt"
tczfs verify >/dev/null || fail "setup: verify of the pristine store"
tczfs info a --json >"$T/info.a.json"
export TCZFS_STORE="$T/store"

keys() { "$CR" "$BASE" --keys "$1"; }
# index_of TABLE HEXKEY: position of the key in key order
index_of() {
	i=$(keys "$1" | grep -nx "$2" | cut -d: -f1)
	[ -n "$i" ] || fail "setup: no key $2 in $1"
	echo $((i - 1))
}
# entries a added (not shared with b): the diff of the key lists
a_only() { keys "$1" | sort | comm -13 <(sort "$T/keys.b.$1") -; }
A_ID=$(a_only tensors | head -1 | cut -c1-16) # model id, u64 big-endian
[ ${#A_ID} = 16 ] || fail "setup: cannot find a's id"
tensor_name() { # INDEX: name of a's tensor with that index
	$PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["tensors"][int(sys.argv[2])]["name"])' \
		"$T/info.a.json" "$1"
}
# chunk key -> tensor name, read from the tensor records in data.mdb (by
# their layout in docs/formats.md, not through tczfs)
$PY - "$BASE/data.mdb" >"$T/chunk_owners" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
seen = set()
import re
starts = [m.start() for m in re.finditer(b"TTEN|TTE2", b)]  # tensor records v1, v2
for p in starts:
    try:
        q = p + 4
        nl, = struct.unpack_from("<I", b, q); q += 4
        if not 0 < nl < 4096:
            raise ValueError
        name = b[q:q + nl].decode(); q += nl
        dtype = b[q]; q += 1
        ndim, = struct.unpack_from("<I", b, q); q += 4
        if dtype > 12 or ndim > 16:
            raise ValueError
        q += 8 * ndim
        codec = b[q]; q += 1
        bits, group, d = struct.unpack_from("<III", b, q); q += 12
        if codec > 3 or d > 64:
            raise ValueError
        if d:
            q += 8 * d + 8 * (d + 1)
        level, cbytes, n = struct.unpack_from("<III", b, q); q += 12
        if n > 1 << 20 or q + 16 * n > len(b):
            raise ValueError
        for i in range(n):
            k = b[q + 16 * i:q + 16 * (i + 1)].hex()
            if (k, name) not in seen:
                seen.add((k, name))
                print(k, name)
    except (ValueError, struct.error, UnicodeDecodeError, IndexError):
        pass
PY
# a chunk only a holds, of tensor number IDX of a
a_chunk_of() {
	name=$(tensor_name "$1")
	k=$(a_only chunks | grep -xFf <(awk -v n="$name" '$2 == n {print $1}' "$T/chunk_owners") | head -1)
	[ -n "$k" ] || fail "setup: no chunk of a's tensor $name"
	echo "$k"
}

T_TENSOR=5 # damaged tensor record
T_REFS=7   # tensor whose chunk's refs record is damaged
T_STATS=8  # tensor whose stats record is damaged
T_CHUNK=9  # tensor whose chunk is damaged
REFS_KEY=$(a_chunk_of $T_REFS)
CHUNK_KEY=$(a_chunk_of $T_CHUNK)
STATS_KEY=$(printf '%s%08x' "$A_ID" $T_STATS)
keys stats | grep -qx "$STATS_KEY" || fail "setup: no statistics saved for a"
AUX_KEY=$(keys aux | grep "^$A_ID" | head -1)
[ -n "$AUX_KEY" ] || fail "setup: a has no blob record"
hexs() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; }

# ---- the damages ----------------------------------------------------------
# id|label|scope (store: the whole store; model: only a)|tensor named in
# verify's line (index) or -
DAMAGES=(
	"1|meta generation|store|-"
	"2|meta next_id|store|-"
	"3|meta schema|store|-"
	"4|model record of a|model|-"
	"5|tensor record of a|model|$T_TENSOR"
	"6|blob record of a|model|-"
	"7|refs record of a chunk of a|model|-"
	"8|stats record of a|model|-"
	"9|chunk of a|model|$T_CHUNK"
	"10|data.mdb truncated to half|store|-"
	"11|foreign LMDB environment|store|-"
	"12|store unreadable (nobody)|store|-"
)

# damage ID: builds $T/dmg, the damaged store every command gets a copy of
damage() {
	rm -rf "$T/dmg"
	if [ "$1" = 11 ]; then
		"$CR" --foreign "$T/dmg"
		echo "table foo"
		return
	fi
	cp -a "$BASE" "$T/dmg"
	case $1 in
	# u64 + checksum: byte 0 changes the value itself
	1) "$CR" "$T/dmg" meta "$(index_of meta "$(hexs generation)")" 0 ;;
	2) "$CR" "$T/dmg" meta "$(index_of meta "$(hexs next_id)")" 0 ;;
	3) "$CR" "$T/dmg" meta "$(index_of meta "$(hexs schema)")" 0 ;;
	4) "$CR" "$T/dmg" models "$(index_of models "$(hexs a)")" ;;
	5) "$CR" "$T/dmg" tensors "$(index_of tensors "$(printf '%s%08x' "$A_ID" $T_TENSOR)")" ;;
	6) "$CR" "$T/dmg" aux "$(index_of aux "$AUX_KEY")" ;;
	7) "$CR" "$T/dmg" refs "$(index_of refs "$REFS_KEY")" 0 ;;
	8) "$CR" "$T/dmg" stats "$(index_of stats "$STATS_KEY")" ;;
	9) "$CR" "$T/dmg" chunks "$(index_of chunks "$CHUNK_KEY")" ;;
	10)
		sz=$(stat -c %s "$T/dmg/data.mdb")
		truncate -s $((sz / 2)) "$T/dmg/data.mdb"
		echo "$sz -> $((sz / 2)) bytes"
		;;
	12)
		chown root:root "$T/dmg"
		chmod 700 "$T/dmg"
		echo "mode $(stat -c '%a %U' "$T/dmg")"
		;;
	esac
}

# ---- running and judging one cell ----------------------------------------
COLS=(ls ls-l ls-json info info-json export verify verify-a rm import mount read-a read-b)
declare -A ST MSG
VIOL=()

fresh_store() {
	rm -rf "$T/store" "$X"/*
	cp -a "$T/dmg" "$T/store"
}

# bad CELL REASON: records a broken rule
bad() {
	VIOL+=("($D) $LABEL | $1: $2")
	case ${ST[$D,$1]} in *!) ;; *) ST[$D,$1]="${ST[$D,$1]}!" ;; esac
}

first_line() { head -c 4096 "$1" | head -1 | cut -c1-100; }
nlines() { grep -c '' "$1" || true; }
crash_text() {
	grep -m1 -E 'Segmentation fault|Bus error|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|core dumped' "$1"
}

# status CELL RC ERRFILE: exit status < 128, no hang, no crash text
check_status() {
	if [ "$2" = 124 ]; then
		bad "$1" "hung (killed after 60 s)"
	elif [ "$2" -ge 128 ]; then
		bad "$1" "killed by SIG$(kill -l $(($2 - 128)) 2>/dev/null || echo $(($2 - 128)))"
	fi
	if c=$(crash_text "$3"); then
		bad "$1" "crash text on stderr: $c"
	fi
}

# one_line CELL ERRFILE: a failure explains itself in one tczfs: line
check_one_line() {
	n=$(nlines "$2")
	if [ "$n" = 0 ]; then
		bad "$1" "failed without a message"
	elif [ "$n" != 1 ]; then
		bad "$1" "$n lines on stderr"
	fi
	if [ "$n" != 0 ] && ! head -1 "$2" | grep -q '^tczfs:'; then
		bad "$1" "message does not start with 'tczfs:'"
	fi
	if [ "$D" = 12 ] && [ "$n" != 0 ]; then
		if grep -qi 'no store' "$2"; then
			bad "$1" "says 'no store', not permission denied"
		elif ! grep -qi 'permission denied' "$2"; then
			bad "$1" "does not say permission denied"
		fi
	fi
}

# tczfs_cell CELL ARGS...: runs tczfs ARGS on a fresh copy, judges the
# common rules; leaves RC, $T/out and $T/err for the caller
tczfs_cell() {
	cell=$1
	shift
	fresh_store
	RC=0
	# (the braces keep bash's "Segmentation fault" notices out of the log)
	{ timeout 60 "${AS[@]}" "$TZBIN" "$@" </dev/null >"$T/out" 2>"$T/err"; } 2>/dev/null || RC=$?
	ST[$D,$cell]=$RC
	MSG[$D,$cell]=$(first_line "$T/err")
	check_status "$cell" $RC "$T/err"
}

plain_cell() {
	tczfs_cell "$@"
	if [ $RC != 0 ] && [ $RC -lt 124 ]; then check_one_line "$1" "$T/err"; fi
}

# verify_cell CELL [MODEL]
verify_cell() {
	cell=$1
	shift
	tczfs_cell "$cell" verify "$@"
	nbad=$(grep -c '^BAD' "$T/out" || true)
	if [ "$nbad" != 0 ]; then
		MSG[$D,$cell]="out: $(grep -m1 '^BAD' "$T/out" | cut -c1-95)"
	fi
	[ $RC -lt 124 ] || return 0
	if [ $RC = 0 ]; then
		# the whole store, or a's own damage, must be reported
		if [ "$cell" = verify ] || [ "$SCOPE" = model ]; then
			bad "$cell" "passed: the damage is not reported"
		fi
		return 0
	fi
	if [ "$nbad" = 0 ]; then
		check_one_line "$cell" "$T/err"
		return 0
	fi
	[ "$nbad" = 1 ] || bad "$cell" "$nbad BAD lines for one damage"
	[ $RC = 1 ] || bad "$cell" "exit status $RC with BAD lines (want 1)"
	if [ -s "$T/err" ]; then bad "$cell" "stderr besides the BAD line: $(first_line "$T/err")"; fi
	if [ "$SCOPE" = model ] && [ "$(grep -c '^BAD a:' "$T/out" || true)" = 0 ]; then
		bad "$cell" "the BAD line does not name model a"
	fi
	if [ "$TIDX" != - ]; then
		tn=$(tensor_name "$TIDX")
		# the name, or (the record holding it being damaged) the index
		if ! grep '^BAD' "$T/out" | grep -qF -e " $tn " -e " $tn:" -e "'$tn'" &&
			! grep '^BAD' "$T/out" | grep -qE "(tensor|index) #?$TIDX([^0-9]|$)"; then
			bad "$cell" "the BAD line does not name tensor $tn"
		fi
	fi
}

export_cell() {
	plain_cell export export a -o "$X/a.out"
	if [ $RC = 0 ] && ! cmp -s "$X/a.out" "$SRC/a.safetensors"; then
		bad export "succeeded with wrong bytes"
	fi
}

# read_cell CELL MODEL: cat MODEL/model.safetensors through the mount
read_cell() {
	cell=$1
	src="$SRC/$2.safetensors"
	rc=0
	timeout 60 "${AS[@]}" cat "$T/mnt/$2/model.safetensors" >"$T/read" 2>"$T/rerr" || rc=$?
	ST[$D,$cell]=$rc
	MSG[$D,$cell]=$(first_line "$T/rerr")
	check_status "$cell" $rc "$T/rerr"
	got=$(stat -c %s "$T/read")
	want=$(stat -c %s "$src")
	if [ "$got" -gt "$want" ] || ! cmp -s -n "$got" "$T/read" "$src"; then
		bad "$cell" "wrong bytes ($got bytes read)"
	elif [ $rc = 0 ] && [ "$got" != "$want" ]; then
		bad "$cell" "short read ($got of $want bytes) without an error"
	fi
	if [ $rc != 0 ] && [ $rc -lt 124 ] && ! grep -q 'Input/output error' "$T/rerr"; then
		bad "$cell" "failed, not with EIO"
	fi
	if [ "$2" = b ] && [ "$SCOPE" = model ] && [ $rc != 0 ]; then
		bad "$cell" "b is not readable though only a is damaged"
	fi
}

# daemon_wait SECONDS: waits for the daemon's exit status in $T/daemon.rc;
# sets DRC (its status, or "hung" after killing it)
daemon_wait() {
	for _ in $(seq $(($1 * 20))); do
		[ -s "$T/daemon.rc" ] && break
		sleep 0.05
	done
	if [ -s "$T/daemon.rc" ]; then
		DRC=$(cat "$T/daemon.rc")
	else
		kill -9 "$(cat "$T/daemon.pid")" 2>/dev/null || true
		DRC=hung
	fi
	wait $SPID 2>/dev/null || true
	rm -f "$T/daemon.pid"
}

mount_cell() {
	fresh_store
	rm -rf "$T/mnt" "$T/daemon.pid" "$T/daemon.rc"
	mkdir "$T/mnt"
	[ "$D" != 12 ] || chown nobody "$T/mnt"
	# In the foreground; its log to a file, so that stderr holds only what
	# the command itself says. A subshell reaps it and records its status
	# (and keeps bash's "Bus error" job notices out of the output).
	(
		"${AS[@]}" "$TZBIN" mount "$T/mnt" -f --cache-mb 16 --log "$X/daemon.log" \
			</dev/null >/dev/null 2>"$T/daemon.err" &
		echo $! >"$T/daemon.pid"
		rc=0
		wait $! || rc=$?
		echo $rc >"$T/daemon.rc"
	) 2>/dev/null &
	SPID=$!
	up=0
	for _ in $(seq 200); do
		if grep -qs " $T/mnt fuse.tczfs " /proc/mounts; then
			up=1
			break
		fi
		[ -s "$T/daemon.rc" ] && break
		sleep 0.05
	done
	if [ $up = 0 ]; then
		daemon_wait 1
		ST[$D,mount]=$DRC
		if [ "$DRC" = hung ]; then
			bad mount "neither mounted nor exited in 10 s"
		else
			check_status mount "$DRC" "$T/daemon.err"
			if [ "$DRC" = 0 ]; then
				bad mount "exited with status 0 without mounting"
			elif [ "$DRC" -lt 124 ]; then
				check_one_line mount "$T/daemon.err"
			fi
		fi
		MSG[$D,mount]=$(first_line "$T/daemon.err")
		ST[$D,read-a]=-
		ST[$D,read-b]=-
		MSG[$D,read-a]="(not mounted)"
		MSG[$D,read-b]="(not mounted)"
		if [ "$SCOPE" = model ]; then
			bad read-b "b is not readable though only a is damaged (no mount)"
		fi
		return 0
	fi
	read_cell read-a a
	read_cell read-b b
	urc=0
	"${AS[@]}" "$TZBIN" umount "$T/mnt" >/dev/null 2>"$T/uerr" || urc=$?
	if [ $urc != 0 ]; then
		fusermount3 -u "$T/mnt" 2>/dev/null || umount -l "$T/mnt" 2>/dev/null || true
	fi
	daemon_wait 10
	ST[$D,mount]=$DRC
	if [ "$DRC" = hung ]; then
		bad mount "the daemon did not exit after umount"
	else
		check_status mount "$DRC" "$T/daemon.err"
	fi
	[ $urc = 0 ] || bad mount "umount failed ($urc): $(first_line "$T/uerr")"
	MSG[$D,mount]=$(first_line "$T/daemon.err")
	if [ -z "${MSG[$D,mount]}" ] && grep -qs 'tczfs\[error\]' "$X/daemon.log"; then
		MSG[$D,mount]="log: $(grep -m1 'tczfs\[error\]' "$X/daemon.log" | cut -c21-110)"
	fi
}

# ---- the corpus ----------------------------------------------------------
for entry in "${DAMAGES[@]}"; do
	IFS='|' read -r D LABEL SCOPE TIDX <<<"$entry"
	what=$(damage "$D")
	echo "damage $D: $LABEL ($what)"
	if [ "$D" = 12 ]; then
		AS=("${AS_NOBODY[@]}")
		TZBIN="$T/bin/tczfs"
	else
		AS=()
		TZBIN=$TCZFS
	fi
	plain_cell ls ls
	plain_cell ls-l ls -l
	plain_cell ls-json ls --json
	plain_cell info info a
	plain_cell info-json info a --json
	export_cell
	verify_cell verify
	verify_cell verify-a a
	plain_cell rm rm a
	plain_cell import import "$SRC/c.safetensors" --name c --quiet
	mount_cell
done

# ---- the table -----------------------------------------------------------
echo
echo "first line on stderr (for verify with BAD lines: the first of them):"
for entry in "${DAMAGES[@]}"; do
	IFS='|' read -r D LABEL SCOPE TIDX <<<"$entry"
	echo "($D) $LABEL"
	for c in "${COLS[@]}"; do
		printf '    %-9s %5s  %s\n' "$c" "${ST[$D,$c]}" "${MSG[$D,$c]}"
	done
done
echo
echo "exit status per command (! = a rule is broken, - = not run):"
printf '%-32s' damage
for c in "${COLS[@]}"; do printf ' %9s' "$c"; done
echo
for entry in "${DAMAGES[@]}"; do
	IFS='|' read -r D LABEL SCOPE TIDX <<<"$entry"
	printf '%-32s' "($D) $LABEL"
	for c in "${COLS[@]}"; do printf ' %9s' "${ST[$D,$c]}"; done
	echo
done
echo
if [ ${#VIOL[@]} != 0 ]; then
	echo "${#VIOL[@]} broken rule(s):"
	printf '  %s\n' "${VIOL[@]}"
	exit 1
fi
echo ok
