#!/usr/bin/env bash
# Stale replicas with real datanodes: datanode 3 is killed, the first two of
# eight chunks are overwritten on the two others (the new writer's lease
# moves every chunk to a new version), and datanode 3 returns with its old
# replicas. They are never served (reads during the resync return the new
# data), they are brought current by delta copies that send only the
# blocks that differ (the bytes saved are reported and logged), and then
# every replica is identical.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
NNLOG="$CLUSTER/namenode.log"
writer stream --path /f --size 8M --io 64K --seed 3 >"$T/w1.log" 2>&1 || fail "first write"
n3=$(keel --json nodes | jq -r --arg a "$(cat "$CLUSTER/dn3.addr")" '.nodes[] | select(.addr == $a) | .node_id')
local_cluster kill-datanode 3
writer stream --path /f --size 2M --io 64K --seed 4 >"$T/w2.log" 2>&1 ||
    { cat "$T/w2.log"; fail "overwrite"; }
keel get /f "$T/ref"
mark=$(wc -l <"$NNLOG")
local_cluster start-datanode 3

# While it resyncs, reads never see the old data.
for ((i = 0; i < 10; i++)); do
    keel get /f "$T/read.$i"
    cmp "$T/ref" "$T/read.$i" || fail "old data served during the resync (round $i)"
    cluster_healthy && break
done
wait_healthy 60 >/dev/null
tail -n +"$mark" "$NNLOG" >"$T/nn.after"
grep -q "copying chunk .* to $n3 (delta" "$T/nn.after" || fail "no delta copy to datanode $n3"
saved=$(sed -n "s/.* to $n3: \([0-9]*\) bytes sent, \([0-9]*\) saved by delta/\2/p" "$T/nn.after" |
    awk '{ s += $1 } END { print s + 0 }')
sent=$(sed -n "s/.* to $n3: \([0-9]*\) bytes sent, \([0-9]*\) saved by delta/\1/p" "$T/nn.after" |
    awk '{ s += $1 } END { print s + 0 }')
log "delta resync of datanode $n3: $sent bytes sent, $saved saved"
# Six chunks did not change at all: their blocks stay where they are.
((saved >= 6 << 20)) || fail "delta copies saved only $saved bytes"
# All three replicas current, on all three nodes, identical.
n=$(keel --json stat /f | jq '[.chunks[] | select(([.replicas[] | select(.state == "current")] | length) == 3)] | length')
[[ "$n" -eq 8 ]] || fail "only $n of 8 chunks have 3 current replicas"
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas differ after the resync"; }
keel get /f "$T/after"
cmp "$T/ref" "$T/after" || fail "data after the resync"
writer verify --path /f --size 2M --io 64K --seed 4 >/dev/null || fail "the overwritten blocks"
pass
