#!/usr/bin/env bash
# Bit rot: a flipped byte in a chunk file and in a sidecar, a truncated and
# a deleted chunk file. Reads return the right data; and, with no client
# reading, the scrubber finds the damage and the namenode repairs it.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
random_file "$T/a" $((12 * 1024 * 1024)) 1
random_file "$T/b" $((12 * 1024 * 1024)) 2
keel put "$T/a" /a
keel put "$T/b" /b

# damage N1 N2 N3 N4: flips a byte in the N1-th chunk file of datanode 1 and
# in the sidecar of the N2-th of datanode 2, cuts the N3-th of datanode 3,
# deletes the N4-th of datanode 1. Remembers the four paths.
damage() {
    flipped=$(chunk_files 1 | sed -n "$1p")
    meta=$(chunk_files 2 | sed -n "$2p")
    meta=${meta%.data}.meta
    cut=$(chunk_files 3 | sed -n "$3p")
    gone=$(chunk_files 1 | sed -n "$4p")
    flip_byte "$flipped" 5000
    flip_byte "$meta" $(($(stat -c %s "$meta") - 100))
    truncate -s 1000 "$cut"
    rm -f "$gone"
}

# The same chunk's data file on another datanode.
twin() {
    local name
    name=$(basename "$1")
    find "$CLUSTER"/dn[0-9]*/chunks -name "$name" | grep -v "^$1$" | head -1
}

# Every damaged file is whole again and equal to its twins; replicas agree.
repaired() {
    [[ -f "$gone" && $(stat -c %s "$cut") -eq $(stat -c %s "$(twin "$cut")") ]] || return 1
    cmp -s "$flipped" "$(twin "$flipped")" || return 1
    cmp -s "$cut" "$(twin "$cut")" || return 1
    cluster_healthy && keel fsck --verify >/dev/null
}

log "damage under /a, then read it"
damage 1 2 3 4
keel get /a "$T/a.back"
cmp "$T/a" "$T/a.back" || fail "a read returned damaged data"
keel get /a "$T/a.back2"
cmp "$T/a" "$T/a.back2" || fail "a second read returned damaged data"
wait_for 120 "the damage under /a to be repaired" repaired

log "damage, and no client reads: the scrubber must find it"
damage 13 14 15 16
t0=$SECONDS
wait_for 120 "the scrubber to find and the namenode to repair the damage" repaired
log "found and repaired without a client read in $((SECONDS - t0)) s"
keel get /b "$T/b.back"
cmp "$T/b" "$T/b.back" || fail "data after repair"
keel get /a "$T/a.back3"
cmp "$T/a" "$T/a.back3" || fail "data after repair"
pass
