# Shared by the integration and fault tests (bash). Source it first:
#
#   source "$KEEL_SRC/tests/lib.sh"
#   cluster_up --datanodes 3 --chunk-size 1M      # sets NN, exports KEEL_NAMENODE
#   keel put "$T/a" /a                            # the CLI against this cluster
#   ...
#   pass                                          # or fail "why"
#
# Everything lives in a temp dir $T that is removed at exit (kept with
# KEEL_KEEP=1). At exit the cluster is stopped with SIGTERM (so the
# sanitizers' leak checks run), other tracked pids are killed, and every log
# is searched for sanitizer reports, which fail the test.
set -euo pipefail

: "${KEEL_SRC:?KEEL_SRC must point at the source tree}"
: "${KEEL_BIN:?KEEL_BIN must point at the built programs}"
KEEL_SRC=$(cd "$KEEL_SRC" && pwd) KEEL_BIN=$(cd "$KEEL_BIN" && pwd)
T=$(mktemp -d /tmp/keel-test.XXXXXX)
cd "$T" # what tools leave in the working directory (fio's verify state) goes too
CLUSTER="$T/cluster"
TRACKED_PIDS=()
TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

log() { echo "[$TEST_NAME $(date +%H:%M:%S)] $*" >&2; }

sanitizer_reports() {
    grep -l -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T"/*.log "$CLUSTER"/*.log \
        2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    # Unmount first: keel-fuse then exits on its own (its leak check runs).
    for m in "${MOUNTS[@]}"; do
        fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    for pid in "${TRACKED_PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    [[ -d "$CLUSTER" ]] && "$KEEL_SRC/scripts/keel-local" down --dir "$CLUSTER" >/dev/null 2>&1
    local bad
    bad=$(sanitizer_reports)
    if [[ -n "$bad" ]]; then
        echo "sanitizer reports in: $bad" >&2
        for f in $bad; do
            echo "---- $f" >&2
            grep -n -E -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" | head -80 >&2
        done
        rc=1
    fi
    if [[ $rc -ne 0 ]]; then
        echo "---- $TEST_NAME failed; last lines of each log:" >&2
        for f in "$T"/*.log "$CLUSTER"/*.log; do
            [[ -f "$f" ]] || continue
            echo "---- $f" >&2
            tail -n 25 "$f" >&2
        done
    fi
    if [[ "${KEEL_KEEP:-0}" == 1 ]]; then
        echo "kept $T" >&2
    else
        rm -rf "$T"
    fi
    exit $rc
}
MOUNTS=()
trap cleanup EXIT

fail() {
    log "FAIL: $*"
    exit 1
}

pass() {
    log "PASS"
    exit 0
}

track_pid() { TRACKED_PIDS+=("$1"); }

# tmpfs_or_skip DIR SIZE: mounts a tmpfs of SIZE at DIR (made if need be),
# for a disk that fills up; where that is not allowed (not root), the test
# passes as skipped. Unmounting it is the caller's.
tmpfs_or_skip() {
    mkdir -p "$1"
    if ! mount -t tmpfs -o "size=$2" keel-test-tmpfs "$1" 2>"$T/mount.err"; then
        log "cannot mount a tmpfs here ($(cat "$T/mount.err")): this test needs root; skipped"
        pass
    fi
}

# mount_keel MOUNTPOINT [keel-fuse args...]: mounts the cluster there (in the
# foreground, in the background of this shell); its log is $T/fuse-NAME.log.
mount_keel() {
    local mnt=$1
    shift
    mkdir -p "$mnt"
    "$KEEL_BIN/keel-fuse" --namenode "$NN" "$mnt" -f "$@" >"$T/fuse-$(basename "$mnt").log" 2>&1 &
    track_pid $!
    MOUNTS+=("$mnt")
    wait_for 30 "the mount at $mnt" mountpoint -q "$mnt"
}

# unmount_keel MOUNTPOINT: unmounts and waits for keel-fuse to exit.
unmount_keel() {
    fusermount3 -u "$1" || fail "cannot unmount $1"
    wait_for 20 "keel-fuse to exit" bash -c "! mountpoint -q '$1'"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.1 s.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "timed out after ${secs}s waiting for $what"
}

local_cluster() { "$KEEL_SRC/scripts/keel-local" "$@" --dir "$CLUSTER"; }

# cluster_up [keel-local up flags]: starts a cluster, sets NN.
cluster_up() {
    NN=$(KEEL_BIN="$KEEL_BIN" local_cluster up "$@" | tail -n 1)
    export KEEL_NAMENODE=$NN
    log "cluster up, namenode $NN"
}

keel() { "$KEEL_BIN/keel" --namenode "$NN" "$@"; }

# random_file PATH SIZE_BYTES [SEED]: deterministic pseudo-random content.
random_file() {
    local seed=${3:-1}
    head -c "$2" <(openssl enc -aes-128-ctr -pass "pass:$seed" -nosalt -pbkdf2 </dev/zero 2>/dev/null) >"$1"
}

# Short timeouts for the fault tests: a datanode is dead after 3 s, copies
# and forwarded writes time out after 2 s, the scrubber is quick.
FAST_NN="--dead-timeout 3s --heartbeat-interval 500ms --lease-timeout 4s --safe-mode-timeout 5s"
FAST_DN="--peer-timeout 2s --scrub-rate 256M"

# fsck_counts: "missing under misplaced stale corrupt" from keel --json fsck.
fsck_counts() {
    keel --json fsck 2>/dev/null |
        jq -r '"\(.missing) \(.under_replicated) \(.misplaced) \(.stale) \(.corrupt)"'
}

# cluster_healthy: every chunk at full, well-placed replication, nothing
# stale or corrupt left.
cluster_healthy() {
    [[ "$(fsck_counts)" == "0 0 0 0 0" ]]
}

# wait_healthy SECONDS: waits for cluster_healthy; prints how long it took.
wait_healthy() {
    local t0=$SECONDS
    wait_for "$1" "every chunk back to full replication" cluster_healthy
    echo $((SECONDS - t0))
}

# node_state I: the namenode's state of datanode I ("alive", "dead", ...).
node_state() {
    local addr
    addr=$(cat "$CLUSTER/dn$1.addr")
    keel --json nodes 2>/dev/null | jq -r --arg a "$addr" '.nodes[] | select(.addr == $a) | .state'
}

# wait_dead I...: waits until the namenode has declared each datanode dead.
wait_dead() {
    local i
    for i in "$@"; do
        wait_for 30 "datanode $i to be declared dead" bash -c "[[ \$(KEEL_NAMENODE=$NN \"$KEEL_BIN/keel\" --json nodes | jq -r --arg a \"\$(cat $CLUSTER/dn$i.addr)\" '.nodes[] | select(.addr == \$a) | .state') == dead ]]"
    done
}

# writer MODE ARGS...: the model-keeping test writer against this cluster.
# In a subshell (writer ... &) it replaces the subshell, so $! is the
# writer's own pid and killing it kills the writer.
writer() {
    local mode=$1
    shift
    if [[ $BASHPID != "$$" ]]; then
        exec "$KEEL_BIN/keel_writer" "$mode" --namenode "$NN" "$@"
    fi
    "$KEEL_BIN/keel_writer" "$mode" --namenode "$NN" "$@"
}

# chunk_files I: the .data files of datanode I.
chunk_files() { find "$CLUSTER/dn$1/chunks" -name '*.data' -type f 2>/dev/null | sort; }

# flip_byte FILE OFFSET: inverts one byte in place.
flip_byte() {
    python3 - "$1" "$2" <<'PY'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0xFF]) if b else b"\xff")
PY
}
