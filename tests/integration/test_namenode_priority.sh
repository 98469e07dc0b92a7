#!/usr/bin/env bash
# Repair priority with real datanodes: one copy stream per node at the
# namenode (--replication-streams 1) and a slow copy rate at the datanodes
# (--replication-rate), so copies queue. After a datanode dies, chunks left
# with one replica (a file of replication 2) are all planned and copied
# before any chunk left with two (a file of replication 3).
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 4 --domains 4 --chunk-size 256K \
    --namenode-args "$FAST_NN --replication-streams 1" \
    --datanode-args "$FAST_DN --replication-rate 512K"
NNLOG="$CLUSTER/namenode.log"
random_file "$T/two" $((4 << 20)) 1
random_file "$T/three" $((4 << 20)) 2
keel put --replication 2 "$T/two" /two
keel put "$T/three" /three
wait_healthy 30 >/dev/null

addr1=$(cat "$CLUSTER/dn1.addr")
n1=$(keel --json nodes | jq -r --arg a "$addr1" '.nodes[] | select(.addr == $a) | .node_id')
on1() { keel --json stat "$1" | jq --argjson n "$n1" '[.chunks[] | select(any(.replicas[]; .node_id == $n))] | length'; }
ones=$(on1 /two)
twos=$(on1 /three)
log "datanode $n1 holds $ones chunks of /two (replication 2) and $twos of /three"
((ones >= 2 && twos >= 2)) || fail "too few chunks on datanode $n1 for the test"
mark=$(wc -l <"$NNLOG")
t0=$(date +%s.%N)
local_cluster kill-datanode 1
dead1() { [[ $(keel --json nodes | jq -r --arg a "$addr1" '.nodes[] | select(.addr == $a) | .state') == dead ]]; }
wait_for 20 "datanode $n1 declared dead" dead1
wait_healthy 120 >/dev/null
t1=$(date +%s.%N)
tail -n +"$mark" "$NNLOG" >"$T/nn.after"

classes=$(sed -n 's/.*repair: chunk [0-9a-f]* has \([0-9]*\) of [0-9]* good replicas.*/\1/p' "$T/nn.after" | tr '\n' ' ')
log "classes in planning order: $classes"
early=$(awk '{ for (i = 1; i <= NF; i++) if ($i == 1) last = i; for (i = 1; i <= last; i++) if ($i == 2) n++; print n + 0 }' <<<"$classes")
((early == 0)) || fail "$early two-replica chunks were planned before a one-replica chunk: $classes"
[[ $(tr ' ' '\n' <<<"$classes" | grep -c '^1$') -ge "$ones" ]] || fail "one-replica chunks not all repaired"
# The copies really queued: the last one-replica chunk was copied before
# the last two-replica chunk, and the whole repair took a while.
last_of() { # class: the line number of its last completed copy
    local ids
    ids=$(sed -n "s/.*repair: chunk \([0-9a-f]*\) has $1 of [0-9]* good replicas.*/\1/p" "$T/nn.after" | sort -u)
    for id in $ids; do grep -n "repair: chunk $id v[0-9]* copied\|datanode [0-9]* has chunk $id v" "$T/nn.after" | tail -1 | cut -d: -f1; done |
        sort -n | tail -1
}
l1=$(last_of 1)
l2=$(last_of 2)
[[ -n "$l1" && -n "$l2" ]] || fail "copies missing from the log"
((l1 < l2)) || fail "the last one-replica chunk was copied after the last two-replica chunk"
log "repair of $((ones + twos)) chunks of 256 KiB took $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s from the death (dead timeout 3 s)"
keel get /two "$T/two.back"
cmp "$T/two" "$T/two.back" || fail "/two after repair"
keel get /three "$T/three.back"
cmp "$T/three" "$T/three.back" || fail "/three after repair"
pass
