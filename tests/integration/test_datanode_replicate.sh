#!/usr/bin/env bash
# Re-replication between datanodes. After a pipeline recovery leaves a chunk
# with two current replicas, the namenode has one of them copy it to
# another datanode (CMD_REPLICATE); the copy is verified block by block on
# arrival, installed atomically and reported. It must arrive intact: the
# same bytes and the same block checksums as its source.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

cluster_up --datanodes 4 --chunk-size 4M \
    --namenode-args "--lease-timeout 10m --heartbeat-interval 200ms"

out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /copy --replication 3) ||
    fail "alloc: $out"
ino=$(kv ino "$out")
chunk=$(kv chunk "$out")
v1=$(kv version "$out")
IFS=, read -r r1 r2 r3 <<<"$(kv replicas "$out")"
[[ -n "$r3" ]] || fail "expected three replicas: $out"
# A sparse replica: data, a hole, data.
out=$(dntool write --dn "${r1#*@}" --chain "$r2,$r3" --chunk "$chunk" --version "$v1" \
    --len 512K --count 3 --seed 21) || fail "write: $out"
out=$(dntool write --dn "${r1#*@}" --chain "$r2,$r3" --chunk "$chunk" --version "$v1" \
    --offset 3000001 --len 300000 --seed 21) || fail "write: $out"
[[ "$(kv acked "$out")" == 1 ]] || fail "writes: $out"
for r in "$r1" "$r2" "$r3"; do
    dntool flush --dn "${r#*@}" --chunk "$chunk" --version "$v1" >/dev/null || fail "flush"
done

out=$(dntool recover --nn "$NN" --client-id "$CID" --ino "$ino" --chunk "$chunk" --version "$v1" \
    --failed "${r3%%@*}") || fail "recover: $out"
v2=$(kv version "$out")
log "chunk $chunk now v$v2 on $(kv replicas "$out"); waiting for a third copy"

three_current() {
    local out
    out=$("$DNTOOL" locate --nn "$NN" --client-id "$CID" --path /copy) || return 1
    [[ "$(kv version "$out")" == "$v2" ]] || return 1
    [[ $(tr ',' '\n' <<<"$(kv replicas "$out")" | grep -c @) -eq 3 ]] || return 1
    echo "$out" >"$T/located"
}
wait_for 60 "the namenode to re-replicate chunk $chunk" three_current
replicas=$(kv replicas "$(cat "$T/located")")
new=$(tr ',' '\n' <<<"$replicas" | grep -v -x -e "$r1" -e "$r2")
[[ -n "$new" ]] || fail "no new replica in $replicas"
log "copied to ${new%%@*}"

want=$(kv digest "$(dntool checksums --dn "${r1#*@}" --chunk "$chunk" --version "$v2")")
for r in ${replicas//,/ }; do
    out=$(dntool checksums --dn "${r#*@}" --chunk "$chunk" --version "$v2") ||
        fail "checksums on ${r%%@*}: $out"
    [[ "$(kv digest "$out")" == "$want" ]] || fail "replica ${r%%@*} has other checksums: $out"
    [[ "$(kv length "$out")" == 3300001 ]] || fail "replica ${r%%@*} length: $out"
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$v2" --offset 0 --len 1536K \
        --seed 21) || fail "read on ${r%%@*}: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "replica ${r%%@*}: $out"
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$v2" --offset 1536K \
        --len $((3000001 - 1572864)) --zeros) || fail "read on ${r%%@*}: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "the hole on ${r%%@*}: $out"
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$v2" --offset 3000001 \
        --len 300000 --seed 21) || fail "read on ${r%%@*}: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "replica ${r%%@*}: $out"
done
new_dn=$(dn_index "${new#*@}")
grep -q "received (3300001 bytes)" "$CLUSTER/dn$new_dn.log" ||
    fail "datanode $new_dn did not log the copy it received"
pass
