#!/usr/bin/env bash
# Decommissioning with real datanodes (4 nodes, 4 domains): `keel
# decommission` drains a datanode (its chunks get replicas elsewhere, the
# status shows the progress and the state), after which it holds nothing
# the cluster needs: killing it loses nothing and leaves every chunk
# healthy. It stays decommissioned across a restart, and `keel
# recommission` returns it to service: the chunks it still holds count
# again (the extra replicas are trimmed) and new chunks go to it.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 4 --domains 4 --chunk-size 1M --namenode-args "$FAST_NN" \
    --datanode-args "$FAST_DN --replication-rate 4M"
NNLOG="$CLUSTER/namenode.log"
random_file "$T/d" $((12 << 20)) 7
keel put "$T/d" /d
wait_healthy 30 >/dev/null

addr4=$(cat "$CLUSTER/dn4.addr")
n4=$(keel --json nodes | jq -r --arg a "$addr4" '.nodes[] | select(.addr == $a) | .node_id')
state4() { keel --json nodes | jq -r --arg a "$addr4" '.nodes[] | select(.addr == $a) | .state'; }
left4() { keel --json nodes | jq -r --arg a "$addr4" '.nodes[] | select(.addr == $a) | .decommission_left'; }
is4() { [[ "$(state4)" == "$1" ]]; }
held=$(chunk_files 4 | wc -l)
((held > 0)) || fail "datanode 4 holds nothing to drain"

keel decommission "$n4" >"$T/decom.out" || fail "decommission: $(cat "$T/decom.out")"
state=$(state4)
[[ "$state" == decommissioning || "$state" == decommissioned ]] || fail "state after decommission: $state"
# While it drains, the status shows what is left (4 MB/s: a few seconds).
left=$(left4)
log "datanode $n4 holds $held chunks; $left left to copy right after the request"
[[ "$state" == decommissioned ]] || ((left > 0)) || fail "draining with nothing left"
# Its replicas stay readable while it drains.
keel get /d "$T/d.1"
cmp "$T/d" "$T/d.1" || fail "data while draining"
wait_for 90 "datanode $n4 decommissioned" is4 decommissioned
grep -q "datanode $n4 .* is decommissioned" "$NNLOG" || fail "no log line for the end of the drain"
# Every chunk has three current replicas elsewhere, in three domains.
keel --json stat /d | jq -e --argjson n "$n4" '
    [.chunks[] | [.replicas[] | select(.state == "current")] |
     select(length != 3 or any(.node_id == $n) or ([.[].domain] | unique | length) != 3)] | length == 0' \
    >/dev/null || fail "chunks not drained: $(keel --json stat /d)"
cluster_healthy || fail "not healthy after the drain: $(fsck_counts)"

# It holds nothing the cluster needs: gone, nothing is missing.
local_cluster kill-datanode 4
cluster_healthy || fail "killing a decommissioned datanode hurt: $(fsck_counts)"
keel get /d "$T/d.2"
cmp "$T/d" "$T/d.2" || fail "data without the decommissioned datanode"
local_cluster start-datanode 4
sleep 2
is4 decommissioned || fail "a decommissioned datanode came back as $(state4)"

# Back in service: alive, its old replicas count again, extras are trimmed.
keel recommission "$n4" >"$T/recom.out" || fail "recommission: $(cat "$T/recom.out")"
wait_for 30 "datanode $n4 alive" is4 alive
three_each() {
    keel --json stat /d | jq -e '[.chunks[] | [.replicas[] | select(.state == "current")] |
        select(length != 3 or ([.[].domain] | unique | length) != 3)] | length == 0' >/dev/null
}
wait_for 60 "three replicas in three domains for every chunk" three_each
wait_healthy 60 >/dev/null
# New chunks go to it again.
random_file "$T/e" $((12 << 20)) 8
keel put "$T/e" /e
keel --json stat /e | jq -e --argjson n "$n4" '[.chunks[].replicas[] | select(.node_id == $n)] | length > 0' \
    >/dev/null || fail "the recommissioned datanode gets no new chunks"
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas differ"; }
keel get /d "$T/d.3"
cmp "$T/d" "$T/d.3" || fail "data after recommission"
pass
