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

damage() { # which file's chunks: a list of 4 .data files of distinct chunks
    local d1 d2 d3
    d1=$(chunk_files 1 | sed -n "$1p")
    d2=$(chunk_files 2 | sed -n "$2p")
    d3=$(chunk_files 3 | sed -n "$3p")
    flip_byte "$d1" 5000
    local meta=${d2%.data}.meta
    flip_byte "$meta" $(($(stat -c %s "$meta") - 100))
    truncate -s 1000 "$d3"
    rm -f "$(chunk_files 1 | sed -n "$4p")"
}

log "damage under /a, then read it"
damage 1 2 3 4
keel get /a "$T/a.back"
cmp "$T/a" "$T/a.back" || fail "a read returned damaged data"
keel get /a "$T/a.back2"
cmp "$T/a" "$T/a.back2" || fail "a second read returned damaged data"

log "damage, and no client reads: the scrubber must find it"
sleep 1
damage 13 14 15 16
wait_healthy 120 >/dev/null
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas still differ"; }
keel get /b "$T/b.back"
cmp "$T/b" "$T/b.back" || fail "data after repair"
keel get /a "$T/a.back3"
cmp "$T/a" "$T/a.back3" || fail "data after repair"
grep -h -i "corrupt" "$CLUSTER"/dn*.log | head -4 >&2 || true
pass
