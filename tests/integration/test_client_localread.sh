#!/usr/bin/env bash
# Local reads: a client on the datanodes' host reads replicas straight from
# their files. A mount that has learned where they are still reads with
# every datanode frozen; it stops reading a datanode's files when that
# datanode dies; an overwrite while a datanode is dead reads back new,
# before and after that node returns at its older version; blocks
# damaged in two replicas' files still read back right; and a mount started
# with --no-local-reads reads through the datanodes only.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
M="$T/mnt"
mount_keel "$M" --log-level info
random_file "$T/a" $((8 << 20)) 1
dd if="$T/a" of="$M/f" bs=1M conv=fsync status=none || fail "write through the mount"
sleep 2 # the replicas settle (their checksums reach the sidecars)

# read_back FILE: reads the file through the mount, past the page cache.
read_back() { timeout 8 dd if="$M/f" iflag=direct bs=1M of="$1" status=none; }

read_back "$T/r1" || fail "read through the mount"
cmp -s "$T/a" "$T/r1" || fail "the data read back differs"
wait_for 10 "the mount to find the local datanodes" \
    grep -q "reading the replicas of node" "$T/fuse-mnt.log"
[[ $(grep -c "reading the replicas of node" "$T/fuse-mnt.log") -eq 3 ]] ||
    fail "the mount did not find all three datanodes local"

# Every datanode frozen: only the replicas' files can answer.
for i in 1 2 3; do local_cluster stop-datanode "$i"; done
read_back "$T/r2"
rc=$?
for i in 1 2 3; do local_cluster cont-datanode "$i"; done
[[ $rc -eq 0 ]] || fail "no read with the datanodes frozen: local reads unused"
cmp -s "$T/a" "$T/r2" || fail "a local read returned wrong data"

# Overwrite while datanode 3 is dead: its files keep the old bytes at the
# old version, the others move on. Reads must see the new bytes at once
# (the replicas being written go over the network), once they have settled,
# and after datanode 3 comes back stale.
local_cluster kill-datanode 3
wait_for 10 "the mount to stop reading datanode 3's files" grep -q "is gone: its replicas" "$T/fuse-mnt.log"
random_file "$T/b" $((8 << 20)) 2
dd if="$T/b" of="$M/f" bs=1M conv=fsync,notrunc status=none || fail "overwrite"
read_back "$T/r3" && cmp -s "$T/b" "$T/r3" || fail "old data right after the overwrite"
sleep 2
read_back "$T/r4" && cmp -s "$T/b" "$T/r4" || fail "old data once the replicas settled"
local_cluster start-datanode 3
sleep 1
read_back "$T/r5" && cmp -s "$T/b" "$T/r5" || fail "old data with the stale node back"
wait_healthy 90 >/dev/null

# The first block damaged in the files of two replicas, the one a local
# read takes (the highest replica_local_rank, client/replica.c) and one
# other: the read still returns the right bytes (a local read that does
# not verify goes to the network, where the third replica serves it), and
# the cluster heals.
chunk=$(keel --json stat /f | jq -c '.chunks[0]')
hex=$(printf "%016x" "$(jq -r '.chunk_id' <<<"$chunk")")
damaged=$(python3 - "$chunk" <<'PY'
import json, sys
M = (1 << 64) - 1
def rank(chunk, node):  # replica_local_rank
    x = ((chunk * 0x9E3779B97F4A7C15) & M) ^ node
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)
c = json.loads(sys.argv[1])
reps = sorted(c["replicas"], key=lambda r: rank(c["chunk_id"], r["node_id"]), reverse=True)
print(" ".join(r["addr"] for r in reps[:2]))
PY
)
for addr in $damaged; do
    i=$(grep -lx "$addr" "$CLUSTER"/dn*.addr | sed 's/.*dn\([0-9]*\)\.addr/\1/')
    [[ -n "$i" ]] || fail "no datanode at $addr"
    flip_byte "$(find "$CLUSTER/dn$i/chunks" -name "$hex.data")" 100
done
read_back "$T/r6" && cmp -s "$T/b" "$T/r6" || fail "damaged blocks were returned"

# A mount that may not read the files goes through the datanodes.
M2="$T/mnt2"
mount_keel "$M2" --log-level info --no-local-reads
timeout 20 dd if="$M2/f" iflag=direct bs=1M of="$T/r7" status=none || fail "read, no local reads"
cmp -s "$T/b" "$T/r7" || fail "the data read without local reads differs"
! grep -q "reading the replicas of node" "$T/fuse-mnt2.log" ||
    fail "--no-local-reads read the replicas' files"
unmount_keel "$M2"
unmount_keel "$M"
wait_healthy 90 >/dev/null
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas differ"; }
pass
