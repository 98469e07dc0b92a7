#!/usr/bin/env bash
# Promise 7: with replication 3 over distinct domains, losing two datanodes
# loses no acknowledged data: two at once (then repair), returning nodes
# (their extra replicas go away), and two one after the other before repair
# could run.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 5 --domains 5 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
writer stream --path /data --size 40M --io 512K --seed 5 >"$T/w.log" 2>&1 || fail "initial write"

log "two datanodes at once"
local_cluster kill-datanode 1
local_cluster kill-datanode 2
writer verify --path /data --size 40M --io 512K --seed 5 >"$T/v1.log" || fail "data lost with two nodes down"
wait_dead 1 2
wait_healthy 120 >/dev/null
keel fsck --verify >"$T/fsck1.txt" || { cat "$T/fsck1.txt"; fail "replicas differ after the first repair"; }

log "they come back: over-replicated chunks lose their extra replicas"
local_cluster start-datanode 1
local_cluster start-datanode 2
wait_healthy 60 >/dev/null
over=$(keel --json stat /data | jq '[.chunks[] | select(([.replicas[] | select(.state == "current")] | length) != 3)] | length')
[[ "$over" -eq 0 ]] || fail "$over chunks do not have exactly 3 replicas"

log "two datanodes one after the other, before any repair"
local_cluster kill-datanode 3
sleep 0.5
local_cluster kill-datanode 4
writer verify --path /data --size 40M --io 512K --seed 5 >"$T/v2.log" || fail "data lost"
wait_dead 3 4
wait_healthy 120 >/dev/null
keel fsck --verify >"$T/fsck2.txt" || { cat "$T/fsck2.txt"; fail "replicas differ after the second repair"; }
writer verify --path /data --size 40M --io 512K --seed 5 >/dev/null || fail "data after repair"
pass
