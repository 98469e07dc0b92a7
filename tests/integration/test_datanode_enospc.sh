#!/usr/bin/env bash
# A datanode whose data directory fills up (a 3 MiB tmpfs): the write that
# does not fit is reported to the writer as ENOSPC for that node, is never
# acknowledged, and neither is a later flush of that replica; what was
# written before still reads back; the datanode keeps running, says so in
# its log and tells the namenode (heartbeat "full"), and shuts down cleanly.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

FULL="$T/full"
mkdir -p "$FULL"
if ! mount -t tmpfs -o size=3m keel-test-full "$FULL" 2>"$T/mount.err"; then
    log "cannot mount a tmpfs here ($(cat "$T/mount.err")): this test needs root; skipped"
    pass
fi
MOUNTS+=("$FULL")

# Only this datanode is in the cluster. It claims a large capacity so the
# namenode places chunks on it; the filesystem knows better.
cluster_up --datanodes 0 --replication 1 --chunk-size 4M \
    --namenode-args "--min-replicas 1 --lease-timeout 10m --heartbeat-interval 200ms"
"$KEEL_BIN/keel-datanode" --data "$FULL/dn" --namenode "$NN" --domain small --capacity 1G \
    --scrub-rate 0 >"$T/dnfull.log" 2>&1 &
dn=$!
track_pid $dn
wait_for 20 "the datanode to register" test -s "$FULL/dn/VERSION"
wait_for 20 "the datanode's report" grep -q "block report of" "$T/dnfull.log"
ADDR=$(tr -d '\n' <"$FULL/dn/listen.addr")
ID=$(sed -n 's/^node_id=//p' "$FULL/dn/VERSION")

out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /big --replication 1) ||
    fail "alloc: $out"
chunk=$(kv chunk "$out")
version=$(kv version "$out")
[[ "$(kv replicas "$out")" == "$ID@$ADDR" ]] || fail "unexpected placement: $out"

# 256 KiB at a time until the filesystem refuses (the chunk is larger).
out=$(dntool write --dn "$ADDR" --chunk "$chunk" --version "$version" --len 256K --count 16 --span 4M \
    --seed 8 --until-failure) || fail "write: $out"
log "$(tr '\n' ' ' <<<"$out")"
acked=$(kv acked "$out")
[[ "$(kv failed "$out")" == "$ID:ENOSPC" ]] || fail "expected ENOSPC from node $ID: $out"
[[ "$acked" -ge 4 && "$acked" -lt 16 ]] || fail "the disk filled at an odd place: $out"

# Never acknowledged afterwards: not the flush, not another write.
out=$(dntool flush --dn "$ADDR" --chunk "$chunk" --version "$version") &&
    fail "a flush after ENOSPC succeeded: $out"
[[ "$(kv status "$out")" == ENOSPC ]] || fail "flush after ENOSPC: $out"
out=$(dntool write --dn "$ADDR" --chunk "$chunk" --version "$version" --offset 0 --len 4096 \
    --seed 8) || fail "write: $out"
[[ "$(kv failed "$out")" == "$ID:ENOSPC" ]] || fail "a later write must fail the same way: $out"

# What was acknowledged is intact and verified.
out=$(dntool read --dn "$ADDR" --chunk "$chunk" --version "$version" --offset 0 \
    --len $((acked * 262144)) --seed 8) || fail "read: $out"
[[ "$(kv match "$out")" == yes ]] || fail "acknowledged data damaged: $out"
grep -q "failed on disk: No space left on device" "$T/dnfull.log" || fail "no log of the failure"
grep -q "disk full; telling the namenode" "$T/dnfull.log" || fail "the namenode was not told"

kill -0 $dn || fail "the datanode died"
kill -TERM $dn
for ((i = 0; i < 100; i++)); do kill -0 $dn 2>/dev/null || break; sleep 0.1; done
wait $dn || fail "the datanode did not exit cleanly"
pass
