#!/usr/bin/env bash
# A datanode frozen (SIGSTOP) for longer than the client's timeout, then
# thawed: writes go on after a bounded stall, and the frozen replica's old
# data is never served afterwards (other readers check everything), and the
# cluster heals.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 4 --domains 4 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
writer stream --path /f --size 16M --io 64K --seconds 14 --random --flush-every 16 --seed 9 \
    --timeout 2000 --model "$T/model" >"$T/w.log" 2>&1 &
w=$!
track_pid $w
sleep 3
log "freezing datanode 1 for 6 s"
local_cluster stop-datanode 1
sleep 6
local_cluster cont-datanode 1
wait $w || { cat "$T/w.log"; fail "writer failed across the freeze"; }
log "writer: $(head -1 "$T/w.log")"
# Fresh clients, several times: never the thawed node's old data.
for i in 1 2 3; do
    writer verify --path /f --size 16M --io 64K --seed 9 --model "$T/model" >"$T/v$i.log" ||
        fail "stale data served (round $i): $(cat "$T/v$i.log")"
done
wait_healthy 120 >/dev/null
keel fsck --verify >/dev/null || fail "replicas differ"
writer verify --path /f --size 16M --io 64K --seed 9 --model "$T/model" >/dev/null || fail "data after healing"
pass
