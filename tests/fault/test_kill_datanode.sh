#!/usr/bin/env bash
# SIGKILL of one datanode during sequential and during random writes: no
# writer sees an error, every acknowledged write reads back, and every chunk
# returns to three well-placed replicas. Prints the time from the death to
# full re-replication for the data the node held.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 4 --domains 4 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
writer stream --path /seq --size 48M --io 1M --flush-every 8 --seed 1 --timeout 2000 >"$T/seq.log" 2>&1 &
seq=$!
writer stream --path /rand --size 16M --io 64K --seconds 10 --random --flush-every 32 --seed 2 \
    --timeout 2000 --model "$T/rand.model" >"$T/rand.log" 2>&1 &
rand=$!
track_pid $seq
track_pid $rand
sleep 3
held=$(chunk_files 2 | wc -l)
log "killing datanode 2 ($held chunk replicas)"
t0=$(date +%s.%N)
local_cluster kill-datanode 2
wait $seq || { cat "$T/seq.log"; fail "sequential writer"; }
wait $rand || { cat "$T/rand.log"; fail "random writer"; }
log "seq: $(head -1 "$T/seq.log"); rand: $(head -1 "$T/rand.log")"

wait_dead 2
wait_healthy 120 >/dev/null
t1=$(date +%s.%N)
log "re-replication: $held chunks of 1 MiB held by the dead node back to 3 replicas $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s after its death (dead timeout 3 s)"
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas differ after repair"; }
# The data, read again from the repaired replicas.
writer verify --path /seq --size 48M --io 1M --seed 1 >/dev/null || fail "sequential data after repair"
writer verify --path /rand --size 16M --io 64K --seed 2 --model "$T/rand.model" >/dev/null ||
    fail "random data after repair"
pass
