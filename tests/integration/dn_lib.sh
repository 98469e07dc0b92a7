# Helpers for the datanode integration tests (sourced after tests/lib.sh).
#
#   kv KEY "$OUTPUT"            value of a key=value line printed by dntool
#   dn_index ADDR               which keel-local datanode (1..N) listens on ADDR
#   dn_node_id I                the node id datanode I was given (its VERSION)
#   chunk_file DIR CHUNK EXT    path of a replica file under a data directory
#   settled DIR CHUNK           the replica's checksums are on disk (SIDECAR_DIRTY clear)
#   dntool ...                  the test tool, output kept in $T/dntool.log too
#   fakenn_up CHUNK_SIZE        starts the scripted namenode (tests/tools/fakenn)
#                               in $T/nn, commands read from $T/control; sets
#                               $FNN (its address) and $fakenn (its pid)
#   $CID                        one client id for every namenode call of a test,
#                               so its write leases never need handing over

DNTOOL="$KEEL_BIN/dntool"
CID=$((RANDOM * 32768 + RANDOM + 1))

kv() {
    grep -E "^$1=" <<<"$2" | head -n 1 | cut -d= -f2-
}

dn_index() {
    local i
    for i in $(seq 1 16); do
        [[ -f "$CLUSTER/dn$i.addr" ]] || continue
        [[ "$(tr -d '\n' <"$CLUSTER/dn$i.addr")" == "$1" ]] && { echo "$i"; return 0; }
    done
    return 1
}

dn_node_id() {
    sed -n 's/^node_id=//p' "$CLUSTER/dn$1/VERSION"
}

chunk_file() {
    printf '%s/chunks/%02x/%016x.%s' "$1" $(($2 & 255)) "$2" "$3"
}

settled() {
    local flags
    flags=$(od -An -tu4 -j 32 -N 4 "$(chunk_file "$1" "$2" meta)" 2>/dev/null | tr -d ' ')
    [[ -n "$flags" ]] && ((!(flags & 1)))
}

dntool() {
    local out rc=0
    out=$("$DNTOOL" "$@" 2>&1) || rc=$?
    printf '%s\n' "---- dntool $* (exit $rc)" "$out" >>"$T/dntool.log"
    printf '%s\n' "$out"
    return $rc
}

fakenn_up() {
    mkdir -p "$T/nn"
    : >"$T/control"
    "$KEEL_BIN/fakenn" --dir "$T/nn" --control "$T/control" --chunk-size "$1" --heartbeat 100 \
        >"$T/fakenn.out" 2>"$T/fakenn.log" &
    fakenn=$!
    track_pid $fakenn
    wait_for 10 "the fake namenode" test -s "$T/nn/listen.addr"
    FNN=$(cat "$T/nn/listen.addr")
}
