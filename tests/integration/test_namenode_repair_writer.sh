#!/usr/bin/env bash
# A writer that comes back to an idle file while a whole re-replication
# copy of its chunk runs does not wait for that copy: the namenode moves the
# chunk to a new version past the copy (which is dropped), the write goes
# through at once, and a fuzzy copy then a delta bring the chunk back to
# three replicas that agree block for block. The dropped copy's target
# drops what it received of it when the source says so.
#
# The writer is one keel-fuse mount, as a hypervisor's: it wrote the file,
# closed it (the lease is released, the file idle) and opens it again, so
# no lease handover fences the chunk in between.
source "$KEEL_SRC/tests/lib.sh"

# 8 MiB chunks copied at 512 KiB/s: a whole copy takes about 16 s.
cluster_up --datanodes 4 --domains 4 --chunk-size 8M --namenode-args "$FAST_NN" \
    --datanode-args "$FAST_DN --replication-rate 512K"
MNT="$T/mnt"
mount_keel "$MNT"
random_file "$T/a" $((8 << 20)) 3
cp "$T/a" "$MNT/a"
sync "$MNT/a"
wait_healthy 30 >/dev/null

victim=""
for i in 1 2 3 4; do
    if [[ -n "$(chunk_files "$i")" ]]; then
        victim=$i
        break
    fi
done
[[ -n "$victim" ]] || fail "no datanode holds the chunk"
log "killing datanode $victim"
local_cluster kill-datanode "$victim" >/dev/null
wait_dead "$victim"
copying() { [[ $(keel --json status | jq '.chunks.replication_running') -gt 0 ]]; }
wait_for 20 "the copy to start" copying
sleep 1
copying || fail "the copy ended before the writer came"
grep -q "fuzzy" "$CLUSTER/namenode.log" && fail "the copy of the idle file is fuzzy"

random_file "$T/b" 4096 4
t0=$(date +%s%N)
dd if="$T/b" of="$MNT/a" bs=4096 count=1 conv=notrunc,fsync status=none ||
    fail "the write failed"
ms=$((($(date +%s%N) - t0) / 1000000))
log "the write took $ms ms"
[[ $ms -lt 5000 ]] || fail "the writer waited $ms ms: for the copy"
grep -q "its copy is dropped for a writer" "$CLUSTER/namenode.log" ||
    fail "the namenode did not drop the copy for the writer"
# Its source, finding its replica moved on, tells the target to drop the
# half-received copy at once (the idle timeout would take 30 s).
gave_up() { cat "$CLUSTER"/dn*.log | grep -q "aborted: its source gave it up"; }
wait_for 10 "the target to drop the abandoned copy" gave_up

secs=$(wait_healthy 45)
log "back to three replicas after $secs s"
keel fsck --verify /a >"$T/fsck.txt" || {
    cat "$T/fsck.txt"
    fail "replicas differ"
}
cp "$T/b" "$T/want"
tail -c +4097 "$T/a" >>"$T/want"
keel get /a "$T/a.back"
cmp "$T/want" "$T/a.back" || fail "the file reads back wrong"
pass
