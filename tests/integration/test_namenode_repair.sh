#!/usr/bin/env bash
# Repair with real datanodes (scripts/keel-local), 4 nodes in 4 domains:
#   - a replica found corrupt by a read is left out of the locations at
#     once, replaced from a good copy, then deleted;
#   - a dead datanode's chunks go back to three well-placed replicas (the
#     time from its death is printed), and the data reads back;
#   - when it returns, the chunks it still holds are over-replicated: each
#     is trimmed back to three, keeping three domains;
#   - status counts agree with fsck throughout.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 4 --domains 4 --chunk-size 1M --namenode-args "$FAST_NN" \
    --datanode-args "$FAST_DN"
NNLOG="$CLUSTER/namenode.log"
random_file "$T/a" $((16 << 20)) 1
keel put "$T/a" /a
wait_healthy 30 >/dev/null

# The namenode's id and state of datanode I (keel-local numbering).
node_id() {
    keel --json nodes | jq -r --arg a "$(cat "$CLUSTER/dn$1.addr")" '.nodes[] | select(.addr == $a) | .node_id'
}
dn_is() { # I STATE
    [[ $(keel --json nodes | jq -r --arg a "$(cat "$CLUSTER/dn$1.addr")" '.nodes[] | select(.addr == $a) | .state') == "$2" ]]
}
# Current replicas of chunk id C, as "node node ...".
current_of() {
    keel --json stat /a | jq -r --argjson c "$1" \
        '.chunks[] | select(.chunk_id == $c) | [.replicas[] | select(.state == "current") | .node_id] | join(" ")'
}
status_counts() {
    keel --json status | jq -r '.chunks | "\(.missing) \(.under_replicated) \(.misplaced) \(.stale_pending) \(.corrupt)"'
}
status_healthy() { [[ "$(status_counts)" == "0 0 0 0 0" ]]; }

# ---------------------------------------------------------- a corrupt replica
n1=$(node_id 1)
f=$(chunk_files 1 | head -1)
cid=$((16#$(basename "$f" .data)))
log "corrupting chunk $cid on datanode $n1"
flip_byte "$f" 5000
keel get /a "$T/a.1"
cmp "$T/a" "$T/a.1" || fail "a read returned corrupt data"
# A read that hit it, or the scrubber, reports it; from then on it is never
# listed as current again, even before the repair is done.
noticed() { ! grep -qw "$n1" <<<"$(current_of "$cid")"; }
wait_for 60 "the corrupt replica noticed" noticed
for ((i = 0; i < 20; i++)); do
    noticed || fail "the corrupt replica is listed again: $(current_of "$cid")"
    sleep 0.05
done
wait_healthy 60 >/dev/null
status_healthy || fail "status disagrees with fsck: $(status_counts)"
reps=$(current_of "$cid")
[[ $(wc -w <<<"$reps") -eq 3 ]] || fail "chunk $cid has replicas '$reps'"
grep -qw "$n1" <<<"$reps" && fail "the corrupt replica is current again: $reps"
gone() { [[ ! -e "$f" ]]; }
wait_for 20 "the corrupt replica deleted" gone
grep -q "chunk $(printf %x "$cid"): corrupt replica on datanode $n1 .* ordered deleted" "$NNLOG" ||
    fail "no deletion of the corrupt replica in the log"
keel fsck --verify >"$T/fsck1.txt" || { cat "$T/fsck1.txt"; fail "replicas differ"; }

# ---------------------------------------------------------- a dead datanode
n2=$(node_id 2)
held=$(chunk_files 2 | wc -l)
t0=$(date +%s.%N)
local_cluster kill-datanode 2
wait_for 20 "datanode 2 declared dead" dn_is 2 dead
wait_healthy 60 >/dev/null
t1=$(date +%s.%N)
log "re-replication: $held chunks of 1 MiB on the dead datanode back to 3 replicas" \
    "$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s after its death (dead timeout 3 s)"
status_healthy || fail "status disagrees with fsck: $(status_counts)"
keel --json stat /a | jq -e --argjson n "$n2" '[.chunks[].replicas[] | select(.node_id == $n)] | length == 0' \
    >/dev/null || fail "the dead datanode is still listed"
keel get /a "$T/a.2"
cmp "$T/a" "$T/a.2" || fail "data after re-replication"
keel fsck --verify >"$T/fsck2.txt" || { cat "$T/fsck2.txt"; fail "replicas differ after repair"; }

# ------------------------------------------------------------- it returns
local_cluster start-datanode 2
wait_for 30 "datanode 2 alive" dn_is 2 alive
three_each() {
    keel --json stat /a | jq -e '[.chunks[] | select(([.replicas[] | select(.state == "current")] | length) != 3)] | length == 0' >/dev/null &&
        keel --json stat /a | jq -e '[.chunks[] | select(([.replicas[] | select(.state == "current") | .domain] | unique | length) != 3)] | length == 0' >/dev/null
}
wait_healthy 60 >/dev/null
wait_for 60 "three replicas in three domains for every chunk" three_each
grep -q "good replicas for 3 wanted: the one on datanode" "$NNLOG" ||
    fail "nothing was trimmed ($(grep -c "fuzzy: the file is being written" "$NNLOG") copies were fuzzy," \
        "so the returning node's replicas were stale)"
keel get /a "$T/a.3"
cmp "$T/a" "$T/a.3" || fail "data after trimming"
keel fsck --verify >"$T/fsck3.txt" || { cat "$T/fsck3.txt"; fail "replicas differ after trimming"; }
pass
