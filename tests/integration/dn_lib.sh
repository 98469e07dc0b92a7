# Helpers for the datanode integration tests (sourced after tests/lib.sh).
#
#   kv KEY "$OUTPUT"            value of a key=value line printed by dntool
#   dn_index ADDR               which keel-local datanode (1..N) listens on ADDR
#   dn_node_id I                the node id datanode I was given (its VERSION)
#   chunk_file DIR CHUNK EXT    path of a replica file under a data directory
#   flip_byte FILE OFFSET       inverts one byte in place
#   settled DIR CHUNK           the replica's checksums are on disk (SIDECAR_DIRTY clear)
#   dntool ...                  the test tool, output kept in $T/dntool.log too
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

flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    [[ -n "$b" ]] || fail "no byte $2 in $1"
    printf "$(printf '\\%03o' $((b ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
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
