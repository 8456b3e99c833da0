#!/bin/bash
# Interrupting an import (SIGINT, SIGKILL) leaves no partial model and a
# consistent store; the next writer rolls back what the killed one wrote.
. "$(dirname "$0")/lib.sh"

tczfs init >/dev/null
"$GEN" "$T/big" --size-mb 120 --dtype f32 --shards 2 --seed 9
"$GEN" "$T/small.safetensors" --size-mb 1
tczfs import "$T/small.safetensors" --name small --quiet >/dev/null

chunks() { mdb_stat -s chunks "$TCZFS_STORE" | awk '/Entries/ {print $2}'; }
c0=$(chunks)

wait_batches() { # until the import has committed a batch (or 40 s)
	for _ in $(seq 400); do
		[ "$(mdb_stat -s pending "$TCZFS_STORE" | awk '/Entries/ {print $2}')" -gt 0 ] && return 0
		sleep 0.1
	done
	return 1
}

# SIGKILL: nothing to clean up after itself
# --level 19 keeps the import slow enough to be caught in the middle
"$TCZFS" import "$T/big" --name big --jobs 2 --level 19 --quiet &  # $! must be tczfs
pid=$!
wait_batches || fail "the import wrote no batch"
kill -KILL $pid
wait $pid 2>/dev/null || true
tczfs ls | grep -qx big && fail "killed import is visible"
tczfs verify >/dev/null || fail "verify with a dead import's leftovers"
[ "$(chunks)" -gt "$c0" ] || fail "expected leftovers before recovery"
tczfs rm small   # any writer rolls the dead import back
[ "$(chunks)" = 0 ] || fail "dead import's chunks were not rolled back: $(chunks)"
tczfs import "$T/small.safetensors" --name small --quiet >/dev/null

# SIGINT: rolls itself back and exits 130
"$TCZFS" import "$T/big" --name big --jobs 2 --level 19 --quiet &
pid=$!
wait_batches || fail "the import wrote no batch"
kill -INT $pid
rc=0
wait $pid || rc=$?
[ $rc = 130 ] || fail "interrupted import exited $rc"
tczfs ls | grep -qx big && fail "interrupted import is visible"
[ "$(chunks)" = "$c0" ] || fail "interrupted import left chunks"
[ "$(mdb_stat -s pending "$TCZFS_STORE" | awk '/Entries/ {print $2}')" = 0 ] ||
	fail "pending markers left"
tczfs verify >/dev/null || fail "verify"

# a reader working while an import runs sees a consistent store
"$TCZFS" import "$T/big" --name big --jobs 2 --quiet &
pid=$!
for _ in $(seq 20); do
	tczfs export small -o "$T/s.out" --force
	cmp -s "$T/small.safetensors" "$T/s.out" || fail "read during import"
	tczfs ls >/dev/null
done
wait $pid || fail "import alongside readers failed"
tczfs verify >/dev/null || fail "verify after concurrent use"
echo ok
