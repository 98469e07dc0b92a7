#!/usr/bin/env bash
# A datanode whose disk fills (ENOSPC on a small tmpfs): writers move on to
# the other replicas, nothing half-written is acknowledged, and the node is
# reported full.
source "$KEEL_SRC/tests/lib.sh"

# Every node claims 8 GiB, so placement keeps choosing datanode 4 even after
# its real filesystem (12 MiB) is full: the writes themselves must hit ENOSPC.
cluster_up --datanodes 4 --domains 4 --chunk-size 1M --namenode-args "$FAST_NN" \
    --datanode-args "$FAST_DN --capacity 8G"
# Datanode 4 moves onto a 12 MiB filesystem, keeping its identity.
local_cluster kill-datanode 4
cp -a "$CLUSTER/dn4" "$T/dn4.saved"
# Its log of small writes does not fit there; it holds nothing yet (no write
# so far), and a datanode that cannot create one goes on without it.
rm -f "$T/dn4.saved/wal"
mount -t tmpfs -o size=12m tmpfs "$CLUSTER/dn4"
MOUNTS+=("$CLUSTER/dn4")
cp -a "$T/dn4.saved/." "$CLUSTER/dn4/"
registrations() { grep -c "registered with" "$CLUSTER/dn4.log" || true; }
before=$(registrations)
reregistered() { (($(registrations) > before)); }
local_cluster start-datanode 4
# The writers must find it registered again, or they may finish on the
# other three before it takes a write.
wait_for 30 "datanode 4 to register again" reregistered

writer stream --path /big --size 64M --io 1M --flush-every 8 --seed 8 >"$T/seq.log" 2>&1 ||
    { cat "$T/seq.log"; fail "sequential writer failed when a disk filled"; }
writer stream --path /rnd --size 16M --io 64K --seconds 6 --random --flush-every 16 --seed 9 \
    --model "$T/model" >"$T/rnd.log" 2>&1 || { cat "$T/rnd.log"; fail "random writer failed"; }
# Either its writes hit ENOSPC, or a heartbeat found less than a chunk and a
# MiB left and said full first (which of the two comes first is timing).
grep -q -i "no space\|ENOSPC\|reporting it full" "$CLUSTER/dn4.log" ||
    fail "datanode 4 never hit ENOSPC nor reported itself full"
writer verify --path /big --size 64M --io 1M --seed 8 >/dev/null || fail "data"
writer verify --path /rnd --size 16M --io 64K --seed 9 --model "$T/model" >/dev/null || fail "data"
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas differ"; }
pass
