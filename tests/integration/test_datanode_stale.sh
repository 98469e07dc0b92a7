#!/usr/bin/env bash
# Fencing by version. A pipeline failure makes the namenode move the
# surviving replicas to a new version (and repair the third); from then on a
# write or a read carrying the old version is refused with ESTALE by the
# current replicas (the other nodes of the chain still get a forwarded write
# and report for themselves), while the current version reads and writes
# normally.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "--lease-timeout 10m"

out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /stale --replication 3) ||
    fail "alloc: $out"
ino=$(kv ino "$out")
chunk=$(kv chunk "$out")
v1=$(kv version "$out")
IFS=, read -r r1 r2 r3 <<<"$(kv replicas "$out")"
[[ -n "$r3" ]] || fail "expected three replicas: $out"
out=$(dntool write --dn "${r1#*@}" --chain "$r2,$r3" --chunk "$chunk" --version "$v1" \
    --len 64K --count 4 --seed 3) || fail "write: $out"
[[ "$(kv acked "$out")" == 4 ]] || fail "first writes: $out"

# The pipeline "lost" the third node: the two others move to a new version.
out=$(dntool recover --nn "$NN" --client-id "$CID" --ino "$ino" --chunk "$chunk" --version "$v1" \
    --failed "${r3%%@*}") || fail "recover: $out"
v2=$(kv version "$out")
[[ "$v2" -gt "$v1" ]] || fail "recovery did not raise the version: $out"
[[ "$(kv replicas "$out")" == "$r1,$r2" ]] || fail "survivors should be $r1,$r2: $out"

# The namenode repairs the third replica (a delta copy at a version it moves
# on once more, since the file has a lease holder): wait for three current
# replicas and take the version they are at.
repaired() {
    local loc
    loc=$("$DNTOOL" locate --nn "$NN" --client-id "$CID" --path /stale) || return 1
    [[ "$(kv replicas "$loc" | tr , '\n' | grep -c @)" == 3 && -z "$(kv stale "$loc")" ]] ||
        return 1
    vc=$(kv version "$loc")
}
wait_for 30 "the stale replica to be repaired" repaired
repaired
[[ "$vc" -ge "$v2" ]] || fail "the version went back: $vc < $v2"

# A late write of the old writer: refused by every current replica, each
# reporting itself (the others of the chain still get it forwarded).
out=$(dntool write --dn "${r1#*@}" --chain "$r2,$r3" --chunk "$chunk" --version "$v1" \
    --offset 0 --len 4096 --seed 99) || fail "old write: $out"
[[ "$(kv failed "$out")" == "${r1%%@*}:ESTALE,${r2%%@*}:ESTALE,${r3%%@*}:ESTALE" ]] ||
    fail "expected every current replica to refuse: $out"
for r in "$r1" "$r2" "$r3"; do
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$v1" --offset 0 --len 4096) &&
        fail "a read at the old version succeeded on ${r%%@*}: $out"
    [[ "$(kv status "$out")" == ESTALE ]] || fail "expected ESTALE on ${r%%@*}: $out"
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$vc" --offset 0 --len 256K \
        --seed 3) || fail "read at the current version on ${r%%@*}: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "the refused write changed ${r%%@*}: $out"
    out=$(dntool flush --dn "${r#*@}" --chunk "$chunk" --version "$v1") &&
        fail "a flush at the old version succeeded: $out"
    [[ "$(kv status "$out")" == ESTALE ]] || fail "a flush at the old version: $out"
done
# A version newer than the replica's is refused too (the replica missed it).
out=$(dntool write --dn "${r1#*@}" --chunk "$chunk" --version $((vc + 1)) --len 4096 --seed 5)
[[ "$(kv failed "$out")" == "${r1%%@*}:ESTALE" ]] || fail "a future version: $out"

# The current version works through the whole pipeline.
out=$(dntool write --dn "${r1#*@}" --chain "$r2,$r3" --chunk "$chunk" --version "$vc" \
    --offset 256K --len 64K --count 2 --seed 3) || fail "new write: $out"
[[ "$(kv acked "$out")" == 2 ]] || fail "writes at the current version: $out"
for r in "$r1" "$r2" "$r3"; do
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$vc" --offset 0 --len 384K \
        --seed 3) || fail "read: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "replica ${r%%@*}: $out"
done
pass
