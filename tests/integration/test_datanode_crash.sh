#!/usr/bin/env bash
# kill -9 of a datanode in the middle of a stream of overlapping writes and
# flushes, three times. After each restart every flushed (indeed every
# acknowledged) byte reads back, writes whose outcome the client never
# learned read back old or new bytes, and no read fails its checksum: the
# sidecars of the chunks left dirty were recovered from their data.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

cluster_up --datanodes 1 --replication 1 --chunk-size 4M \
    --namenode-args "--min-replicas 1 --lease-timeout 10m"
ADDR=$(tr -d '\n' <"$CLUSTER/dn1.addr")

for round in 1 2 3; do
    out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /crash --index $((round - 1)) \
        --replication 1) || fail "alloc: $out"
    chunk=$(kv chunk "$out")
    version=$(kv version "$out")
    "$DNTOOL" stream --dn "$ADDR" --chunk "$chunk" --version "$version" --span 4M \
        --seconds 60 --flush-every 12 --inflight 16 --seed $round --journal "$T/journal.$round" \
        >"$T/stream.$round" 2>&1 &
    streamer=$!
    track_pid $streamer
    sleep $((round)).3
    local_cluster kill-datanode 1
    for ((i = 0; i < 300; i++)); do kill -0 $streamer 2>/dev/null || break; sleep 0.1; done
    wait $streamer || fail "stream failed: $(cat "$T/stream.$round")"
    out=$(cat "$T/stream.$round")
    [[ "$(kv ended "$out")" == lost ]] || fail "the stream outlived the datanode: $out"
    [[ "$(kv acked "$out")" -ge 50 ]] || fail "too little was written before the kill: $out"
    [[ "$(kv failed "$out")" == 0 ]] || fail "writes failed before the kill: $out"
    grep -q '^L .* A$' "$T/journal.$round" || fail "no flush was acknowledged"

    local_cluster start-datanode 1
    out=$(dntool verify-stream --dn "$ADDR" --chunk "$chunk" --version "$version" \
        --journal "$T/journal.$round") || fail "round $round: $out"
    [[ "$(kv mismatched "$out")" == 0 ]] || fail "round $round: $out"
    log "round $round: $(kv acked "$(cat "$T/stream.$round")") acked, flushed through op" \
        "$(kv flushed_upto "$out"), all verified"
done
grep -q "recovered after an unclean stop" "$CLUSTER/dn1.log" ||
    fail "no dirty replica was recovered at a restart"
pass
