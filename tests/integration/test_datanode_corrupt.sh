#!/usr/bin/env bash
# A flipped byte in a replica's .data and one in its .meta are both caught:
# first by a read (-EIO for that read, the replica marked corrupt and the
# namenode told at once), then, on other replicas nobody reads, by the
# scrubber alone.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

cluster_up --datanodes 1 --replication 1 --chunk-size 1M --namenode-args "--min-replicas 1 --lease-timeout 10m" \
    --datanode-args "--scrub-rate 0"
DIR="$CLUSTER/dn1"
ADDR=$(tr -d '\n' <"$CLUSTER/dn1.addr")
ID=$(dn_node_id 1)

# Chunk INDEX of /corrupt, written whole with pattern SEED and flushed.
make_chunk() {
    local out
    out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /corrupt --index "$1" --replication 1) ||
        fail "alloc: $out"
    C=$(kv chunk "$out")
    V=$(kv version "$out")
    [[ "$(kv replicas "$out")" == "$ID@$ADDR" ]] || fail "unexpected placement: $out"
    out=$(dntool write --dn "$ADDR" --chunk "$C" --version "$V" --len 1M --seed "$2") ||
        fail "write: $out"
    [[ "$(kv acked "$out")" == 1 ]] || fail "write not acked: $out"
    dntool flush --dn "$ADDR" --chunk "$C" --version "$V" >/dev/null || fail "flush failed"
}

namenode_says_corrupt() { # INDEX
    local out
    out=$("$DNTOOL" locate --nn "$NN" --client-id "$CID" --path /corrupt --index "$1") || return 1
    [[ ",$(kv corrupt "$out")," == *",$ID@"* ]]
}

# ---- caught by a read
make_chunk 0 11
A=$C AV=$V
make_chunk 1 12
B=$C BV=$V
out=$(dntool read --dn "$ADDR" --chunk "$A" --version "$AV" --offset 300000 --len 8192 --seed 11)
[[ "$(kv match "$out")" == yes ]] || fail "chunk $A unreadable before any damage: $out"

flip_byte "$(chunk_file "$DIR" "$A" data)" 300123
out=$(dntool read --dn "$ADDR" --chunk "$A" --version "$AV" --offset 299000 --len 4096 --seed 11) &&
    fail "a read over a flipped data byte succeeded: $out"
[[ "$(kv status "$out")" == EIO ]] || fail "expected EIO over the flipped data byte: $out"
wait_for 10 "the namenode to learn chunk $A is corrupt" namenode_says_corrupt 0
# The replica is out of service, not only the bad block.
out=$(dntool read --dn "$ADDR" --chunk "$A" --version "$AV" --offset 0 --len 4096 --seed 11) &&
    fail "a corrupt replica served a read: $out"

# Block 10's checksum in the sidecar (after its 4 KiB header), once the
# checksums of the replica, idle now, have left memory for the sidecar.
wait_for 10 "chunk $B to settle" settled "$DIR" "$B"
flip_byte "$(chunk_file "$DIR" "$B" meta)" $((4096 + 10 * 8 + 3))
out=$(dntool read --dn "$ADDR" --chunk "$B" --version "$BV" --offset 0 --len 32768 --seed 12)
[[ "$(kv match "$out")" == yes ]] || fail "blocks before the damage must read: $out"
out=$(dntool read --dn "$ADDR" --chunk "$B" --version "$BV" --offset $((10 * 4096 + 5)) --len 10 \
    --seed 12) && fail "a read over a flipped checksum succeeded: $out"
[[ "$(kv status "$out")" == EIO ]] || fail "expected EIO over the flipped checksum: $out"
wait_for 10 "the namenode to learn chunk $B is corrupt" namenode_says_corrupt 1
grep -q "is corrupt: block 73 failed its checksum (read)" "$CLUSTER/dn1.log" ||
    fail "no log line for the data flip"
grep -q "is corrupt: block 10 failed its checksum (read)" "$CLUSTER/dn1.log" ||
    fail "no log line for the checksum flip"

# ---- caught by the scrubber: the same datanode, now scrubbing
pid=$(cat "$CLUSTER/dn1.pid")
kill -TERM "$pid"
for ((i = 0; i < 100; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
[[ -d /proc/$pid ]] && fail "datanode did not stop on TERM"
"$KEEL_BIN/keel-datanode" --data "$DIR" --namenode "$NN" --listen "$ADDR" --domain d1 \
    --scrub-rate 256M >"$T/dn1-scrub.log" 2>&1 &
scrubbing=$!
track_pid $scrubbing
wait_for 20 "the datanode to register again" grep -q "block report of" "$T/dn1-scrub.log"

make_chunk 2 13
C2=$C
make_chunk 3 14
D=$C
flip_byte "$(chunk_file "$DIR" "$C2" data)" 777777
wait_for 10 "chunk $D to settle" settled "$DIR" "$D"
flip_byte "$(chunk_file "$DIR" "$D" meta)" $((4096 + 200 * 8))
wait_for 20 "the scrubber to find the flipped data byte" namenode_says_corrupt 2
wait_for 20 "the scrubber to find the flipped checksum" namenode_says_corrupt 3
grep -q "chunk $(printf %016x "$C2") version [0-9]* is corrupt: block 189 failed its checksum (scrub)" \
    "$T/dn1-scrub.log" || fail "no scrub log line for chunk $C2"
grep -q "chunk $(printf %016x "$D") version [0-9]* is corrupt: block 200 failed its checksum (scrub)" \
    "$T/dn1-scrub.log" || fail "no scrub log line for chunk $D"
grep -q "(read)" "$T/dn1-scrub.log" && fail "a read, not the scrubber, found the damage"

kill -TERM $scrubbing
for ((i = 0; i < 100; i++)); do kill -0 $scrubbing 2>/dev/null || break; sleep 0.1; done
wait $scrubbing || fail "the scrubbing datanode did not exit cleanly"
pass
