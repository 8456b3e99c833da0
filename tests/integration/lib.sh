# Shared by the integration tests (sourced). Each test gets a private
# temporary directory that is removed, with anything mounted in it
# unmounted, on exit; exit status 77 means "skipped" to meson.
set -eu
: "${TCZFS:?TCZFS must point at the tczfs binary}"
PY=/usr/bin/python3
SRC_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GEN="$SRC_ROOT/tools/gen-model"
MODELS=${TCZ_MODELS_DIR:-$SRC_ROOT/../shared/models}
T=$(mktemp -d /tmp/tczfs-test.XXXXXX)
export PYTHONPATH="$SRC_ROOT/tests/integration" # stfile.py
export TCZFS_STORE="$T/store"

# A test that starts more than mounts (a Ceph cluster) defines
# before_cleanup; it runs first, and its failures do not stop the rest
# (set -e applies inside traps too).
cleanup() {
	status=$?
	if [ "$(type -t before_cleanup)" = function ]; then
		before_cleanup || true
	fi
	for m in $(awk -v t="$T" '$2 ~ "^"t {print $2}' /proc/mounts); do
		fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	for p in $(cat "$T"/*.pid 2>/dev/null); do
		for _ in $(seq 50); do # a daemon finishing its unmount
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill "$p" 2>/dev/null || true
	done
	# a sanitizer's report in a daemon's log fails the test
	if [ "$status" = 0 ] && grep -lE "Sanitizer|runtime error:" "$T"/*.log \
		>/dev/null 2>&1; then
		grep -hE -A20 "Sanitizer|runtime error:" "$T"/*.log | head -60 >&2
		status=1
	fi
	rm -rf "$T"
	exit "$status"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

skip() {
	echo "SKIP: $*"
	exit 77
}

tczfs() {
	"$TCZFS" "$@"
}

# require CMD...: SKIP (never a silent pass) when a tool is missing
require() {
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
	done
}

# every test generates its data with NumPy (tools/gen-model)
"$PY" -c 'import numpy' 2>/dev/null || skip "$PY with NumPy is not installed"

# expect_fail "what" cmd...: the command must fail with one line on stderr
expect_fail() {
	what=$1
	shift
	if "$@" >"$T/out" 2>"$T/err"; then
		fail "$what: succeeded"
	fi
	[ "$(wc -l <"$T/err")" -ge 1 ] || fail "$what: no message"
	grep -q . "$T/err" || fail "$what: empty message"
}

sha() {
	sha256sum "$1" | cut -d' ' -f1
}

real_models() {
	ls "$MODELS"/*.safetensors 2>/dev/null || true
}

# mount_store MNT [args]: mounts in the foreground in the background of
# this shell, records the daemon's pid in $T/daemon.pid, waits until ready
mount_store() {
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	require fusermount3
	mnt=$1
	shift
	mkdir -p "$mnt"
	"$TCZFS" mount "$mnt" -f "$@" 2>>"$T/daemon.log" &
	echo $! >"$T/daemon.pid"
	for _ in $(seq 100); do
		grep -qs " $mnt fuse.tczfs " /proc/mounts && return 0
		sleep 0.05
	done
	cat "$T/daemon.log" >&2
	fail "mount did not come up"
}

# wait_exit PID [SECONDS]: waits (10 s) for a process of this shell to
# exit and reaps it; 1 if it is still there
wait_exit() {
	for _ in $(seq $((${2:-10} * 20))); do
		kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
		sleep 0.05
	done
	return 1
}

# umount_store MNT: unmounts and waits for the daemon to exit (10 s)
umount_store() {
	"$TCZFS" umount "$1" || fail "umount $1"
	wait_exit "$(cat "$T/daemon.pid")" || fail "the daemon did not exit after umount"
}
