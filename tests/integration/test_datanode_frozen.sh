#!/usr/bin/env bash
# A frozen (SIGSTOP) last node of a write chain: the middle node's forward
# times out and names it; the first node, whose own forward allows for the
# time the middle one needs, does not blame the middle one. After SIGCONT
# the node serves again.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "--lease-timeout 10m" \
    --datanode-args "--peer-timeout 2s"
out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /frozen --replication 3) ||
    fail "alloc: $out"
chunk=$(kv chunk "$out")
v=$(kv version "$out")
IFS=, read -r r1 r2 r3 <<<"$(kv replicas "$out")"
[[ -n "$r3" ]] || fail "expected three replicas: $out"
third=$(dn_index "${r3#*@}") || fail "no datanode at ${r3#*@}"

out=$(dntool write --dn "${r1#*@}" --chain "$r2,$r3" --chunk "$chunk" --version "$v" --len 64K \
    --seed 5) || fail "write: $out"
[[ "$(kv acked "$out")" == 1 ]] || fail "write before the freeze: $out"

local_cluster stop-datanode "$third"
start=$(date +%s%N)
out=$(dntool write --dn "${r1#*@}" --chain "$r2,$r3" --chunk "$chunk" --version "$v" \
    --offset 64K --len 64K --seed 5) || fail "write: $out"
took=$((($(date +%s%N) - start) / 1000000))
local_cluster cont-datanode "$third"
log "$(tr '\n' ' ' <<<"$out") in ${took} ms"
[[ "$(kv failed "$out")" == "${r3%%@*}:ETIMEDOUT" ]] ||
    fail "the frozen node ${r3%%@*} alone must be named: $out"
[[ $took -ge 1900 ]] || fail "the answer came after $took ms, before the 2 s peer timeout"
for r in "$r1" "$r2"; do
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$v" --len 128K --seed 5) ||
        fail "read: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "replica ${r%%@*}: $out"
done
# Thawed, it has the first write and takes new ones.
out=$(dntool read --dn "${r3#*@}" --chunk "$chunk" --version "$v" --len 64K --seed 5) ||
    fail "read after the thaw: $out"
[[ "$(kv match "$out")" == yes ]] || fail "thawed replica: $out"
out=$(dntool write --dn "${r3#*@}" --chunk "$chunk" --version "$v" --offset 512K --len 4K \
    --seed 5) || fail "write after the thaw: $out"
[[ "$(kv acked "$out")" == 1 ]] || fail "write after the thaw: $out"
pass
