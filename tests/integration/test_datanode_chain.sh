#!/usr/bin/env bash
# A write chain of three datanodes: writes stream through it and the third
# is killed (-9) on the way. The ack that meets the dead node names it (and
# only it); the two others hold every write up to and including that one,
# byte for byte.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

SPAN=$((4 << 20))
LEN=65536
cluster_up --datanodes 3 --chunk-size 4M --namenode-args "--lease-timeout 10m"

out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /chain --replication 3) || fail "alloc: $out"
chunk=$(kv chunk "$out")
version=$(kv version "$out")
IFS=, read -r r1 r2 r3 <<<"$(kv replicas "$out")"
[[ -n "$r3" ]] || fail "expected three replicas: $out"
third=$(dn_index "${r3#*@}") || fail "no datanode at ${r3#*@}"
third_id=${r3%%@*}
[[ "$third_id" == "$(dn_node_id "$third")" ]] || fail "node id of datanode $third is not $third_id"
log "chunk $chunk v$version: ${r1%%@*} -> ${r2%%@*} -> $third_id (datanode $third)"

# Writes every 5 ms through the whole chain until one fails somewhere.
"$DNTOOL" write --dn "${r1#*@}" --chain "$r2,$r3" --chunk "$chunk" --version "$version" \
    --len $LEN --count 3000 --span $SPAN --interval 5 --until-failure --seed 7 \
    >"$T/write.out" 2>&1 &
writer=$!
track_pid $writer
sleep 1.5
kill -0 $writer 2>/dev/null || fail "the writer stopped before the kill: $(cat "$T/write.out")"
local_cluster kill-datanode "$third"
for ((i = 0; i < 300; i++)); do kill -0 $writer 2>/dev/null || break; sleep 0.1; done
kill -0 $writer 2>/dev/null && fail "the writer did not notice the dead node in 30 s"
wait $writer || fail "writer failed: $(cat "$T/write.out")"
out=$(cat "$T/write.out")
log "$(tr '\n' ' ' <<<"$out")"

writes=$(kv writes "$out")
[[ "$(kv acked "$out")" -ge 10 ]] || fail "too few writes acked before the kill: $out"
[[ "$(kv acked "$out")" -eq $((writes - 1)) ]] || fail "only the last write may fail: $out"
failed=$(kv failed "$out")
[[ "$failed" =~ ^${third_id}:(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT)$ ]] ||
    fail "the ack must name node $third_id alone, got failed=$failed"
[[ -z "$(kv unreached "$out")" ]] || fail "nothing follows the third node: $out"

# Every write, the failed one included, is on the first two replicas.
covered=$((writes * LEN < SPAN ? writes * LEN : SPAN))
for r in "$r1" "$r2"; do
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$version" --offset 0 \
        --len $covered --seed 7) || fail "read from ${r%%@*}: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "replica ${r%%@*} differs: $out"
    out=$(dntool flush --dn "${r#*@}" --chunk "$chunk" --version "$version") ||
        fail "flush on ${r%%@*}: $out"
done
d1=$(kv digest "$(dntool checksums --dn "${r1#*@}" --chunk "$chunk")")
d2=$(kv digest "$(dntool checksums --dn "${r2#*@}" --chunk "$chunk")")
[[ -n "$d1" && "$d1" == "$d2" ]] || fail "the survivors' checksums differ ($d1 vs $d2)"
pass
