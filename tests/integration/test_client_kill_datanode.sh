#!/usr/bin/env bash
# A datanode killed with SIGKILL in the middle of two write streams, one of
# writes that go down the chain of replicas and one of small writes sent to
# every replica at once (keel_options.fanout_max): neither writer sees an
# error, and every acknowledged write reads back.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 4 --domains 4 --chunk-size 1M
"$KEEL_BIN/keel_writer" stream --namenode "$NN" --path /chain --size 48M --io 256K \
    --fanout-max 0 --seconds 12 --random --flush-every 16 --seed 3 >"$T/chain.log" 2>&1 &
chain=$!
track_pid $chain
"$KEEL_BIN/keel_writer" stream --namenode "$NN" --path /fanout --size 16M --io 16K \
    --fanout-max 16K --seconds 12 --random --flush-every 16 --seed 4 >"$T/fanout.log" 2>&1 &
fanout=$!
track_pid $fanout
sleep 4
log "killing datanode 2"
local_cluster kill-datanode 2
for w in chain fanout; do
    wait ${!w} || { cat "$T/$w.log"; fail "$w writer saw errors or lost data"; }
    grep -q "failed 0" "$T/$w.log" || fail "$w writer: $(cat "$T/$w.log")"
    grep -q " 0 bad" "$T/$w.log" || fail "$w writer: $(cat "$T/$w.log")"
    # Both met the dead node (in a write or a flush) and recovered a chunk.
    grep -q "recovered: v" "$T/$w.log" || fail "$w writer never met the killed datanode"
    log "$w: $(grep -h "^acked\|^verified" "$T/$w.log" | tr "\n" " ")"
done
pass
