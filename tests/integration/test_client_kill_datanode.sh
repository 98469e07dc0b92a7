#!/usr/bin/env bash
# A datanode killed with SIGKILL in the middle of a write stream: the writer
# sees no error, and every acknowledged write reads back.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 4 --domains 4 --chunk-size 1M
"$KEEL_BIN/keel_writer" stream --namenode "$NN" --path /stream --size 48M --io 256K \
    --seconds 12 --random --flush-every 16 --seed 3 >"$T/writer.log" 2>&1 &
writer=$!
track_pid $writer
sleep 4
log "killing datanode 2"
local_cluster kill-datanode 2
wait $writer || { cat "$T/writer.log"; fail "writer saw errors or lost data"; }
grep -q "failed 0" "$T/writer.log" || fail "writer: $(cat "$T/writer.log")"
grep -q " 0 bad" "$T/writer.log" || fail "writer: $(cat "$T/writer.log")"
log "$(head -1 "$T/writer.log")"
pass
