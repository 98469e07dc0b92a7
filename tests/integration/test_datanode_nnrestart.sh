#!/usr/bin/env bash
# Datanodes keep serving reads and writes of known chunks while the
# namenode is down, and register again (full block report included) when
# it comes back; a datanode restarted meanwhile keeps its identity.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

cluster_up --datanodes 2 --chunk-size 1M \
    --namenode-args "--lease-timeout 10m --heartbeat-interval 200ms"
out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /nn --replication 2) || fail "alloc: $out"
chunk=$(kv chunk "$out")
v=$(kv version "$out")
IFS=, read -r r1 r2 <<<"$(kv replicas "$out")"
id1=$(dn_node_id 1)
id2=$(dn_node_id 2)

local_cluster kill-namenode
sleep 1
out=$(dntool write --dn "${r1#*@}" --chain "$r2" --chunk "$chunk" --version "$v" --len 256K \
    --count 4 --seed 6) || fail "write without a namenode: $out"
[[ "$(kv acked "$out")" == 4 ]] || fail "writes without a namenode: $out"
for r in "$r1" "$r2"; do
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$v" --len 1M --seed 6) ||
        fail "read without a namenode: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "read without a namenode: $out"
    dntool flush --dn "${r#*@}" --chunk "$chunk" --version "$v" >/dev/null || fail "flush"
done
# A datanode restarted while the namenode is away serves from its disk.
pid=$(cat "$CLUSTER/dn2.pid")
kill -TERM "$pid"
for ((i = 0; i < 100; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
local_cluster start-datanode 2
out=$(dntool read --dn "${r2#*@}" --chunk "$chunk" --version "$v" --len 1M --seed 6) ||
    fail "read after a restart without a namenode: $out"
[[ "$(kv match "$out")" == yes ]] || fail "after restart: $out"

reports() { cat "$CLUSTER/dn1.log" "$CLUSTER/dn2.log" | grep -c "nnlink: block report of" || true; }
reports_before=$(reports)
local_cluster start-namenode
reported_again() { [[ $(reports) -ge $((reports_before + 2)) ]]; }
wait_for 30 "both datanodes to register and report again" reported_again
[[ "$(dn_node_id 1)" == "$id1" && "$(dn_node_id 2)" == "$id2" ]] || fail "identities changed"
# The namenode knows where the chunk is again.
located() {
    local out
    out=$("$DNTOOL" locate --nn "$NN" --client-id "$CID" --path /nn) || return 1
    [[ $(tr ',' '\n' <<<"$(kv replicas "$out")" | grep -c @) -eq 2 ]]
}
wait_for 30 "the namenode to locate both replicas" located
pass
