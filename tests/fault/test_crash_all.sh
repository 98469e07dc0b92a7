#!/usr/bin/env bash
# Promises 2 and 8: SIGKILL of every datanode and the namenode after a
# flush; after a restart of all of them, flushed data is intact, and blocks
# written after the flush read back whole old or whole new data, never an
# error.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
random_file "$T/a" $((20 * 1024 * 1024)) 3
keel put "$T/a" /a
writer crash --path /b --size 16M --io 64K --seed 4 --unflushed 64 >"$T/crash.log" 2>&1 &
cw=$!
track_pid $cw
wait_for 60 "the crash writer to be ready" grep -q ready "$T/crash.log"

log "killing everything"
local_cluster kill-namenode
for i in 1 2 3; do local_cluster kill-datanode $i; done
kill -KILL $cw 2>/dev/null || true
sleep 1
local_cluster start-namenode
for i in 1 2 3; do local_cluster start-datanode $i; done

keel get /a "$T/a.back"
cmp "$T/a" "$T/a.back" || fail "flushed data damaged by the crash"
writer crashcheck --path /b --size 16M --io 64K --seed 4 >"$T/check.log" 2>&1 ||
    { cat "$T/check.log"; fail "blocks after the crash"; }
log "$(cat "$T/check.log")"
keel fsck --verify >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "replicas differ after the crash"; }
pass
