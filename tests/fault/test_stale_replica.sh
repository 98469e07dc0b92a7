#!/usr/bin/env bash
# A stale replica returns: a datanode is stopped, the file is overwritten,
# the node comes back with the old data at an old version. The old data is
# never served, and the stale replicas are resynced or replaced.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
writer stream --path /f --size 24M --io 1M --seed 1 >/dev/null || fail "first write"
local_cluster kill-datanode 3
# Overwrite every block with new data while datanode 3 is away (2 replicas).
writer stream --path /f --size 24M --io 1M --seed 2 >"$T/w2.log" 2>&1 || { cat "$T/w2.log"; fail "overwrite"; }
local_cluster start-datanode 3
for i in 1 2 3; do
    writer verify --path /f --size 24M --io 1M --seed 2 >"$T/v$i.log" ||
        fail "old data served after the stale node returned: $(cat "$T/v$i.log")"
done
wait_healthy 90 >/dev/null
keel fsck --verify >/dev/null || fail "replicas differ after resync"
# All three replicas are current again and on all three nodes.
n=$(keel --json stat /f | jq '[.chunks[] | select(([.replicas[] | select(.state == "current")] | length) == 3)] | length')
[[ "$n" -eq 24 ]] || fail "only $n of 24 chunks have 3 current replicas"
writer verify --path /f --size 24M --io 1M --seed 2 >/dev/null || fail "data after resync"
grep -h -i "delta\|saved" "$CLUSTER"/*.log | head -3 >&2 || true
pass
