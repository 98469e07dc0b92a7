#!/usr/bin/env bash
# Write leases (DESIGN.md promise 5) through the real namenode: a holder
# that agrees hands the file over and the chunks it was given are fenced
# (a new version at every datanode) before the newcomer gets them; a
# holder still writing refuses and the newcomer gets EBUSY; a holder that
# died loses the lease when it expires; reads need no lease.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/nn_lib.sh"

nn_format --chunk-size 1M --replication 3
nn_start --dead-timeout 5s --heartbeat-interval 200ms --lease-timeout 2s
dn_start 1 d1
dn_start 2 d2
dn_start 3 d3
wait_for 20 "3 live datanodes" has_alive 3
op create /img size=4M >/dev/null

# writer NAME ANSWER: a lease holder in the background; its events in $T/NAME.out.
writer() {
    "$NNP" writer --namenode "$NN" --path /img --answer "$2" >"$T/$1.out" 2>>"$T/$1.log" &
    WPID[$1]=$!
    track_pid "${WPID[$1]}"
}
declare -A WPID=()
granted() { grep -q '^granted' "$T/$1.out"; }
version_of() { awk -v c="$1" '$1 == "chunk" && $3 == c { print $4 }'; }

# -------------------------------------------------- handover with fencing
writer a release
wait_for 20 "writer a to get the lease" granted a
chunk=$(awk '$1 == "chunk" { print $3 }' "$T/a.out")
[[ -n "$chunk" ]] || fail "writer a was given no chunk: $(cat "$T/a.out")"
va=$(version_of "$chunk" <"$T/a.out")
out=$(op --client-id 222 chunks /img 0 1M write)
vb=$(version_of "$chunk" <<<"$out")
grep -q "^recall ino=.* answer=release" "$T/a.out" || fail "writer a was not asked"
[[ "${va#v}" -lt "${vb#v}" ]] || fail "no fencing: a had $va, b got $vb"
[[ $(all_replicas | awk -v c="$chunk" -v v="${vb#v}" '$1 == c && $2 == v' | wc -l) -eq 3 ]] ||
    fail "the datanodes do not all hold $chunk at ${vb}: $(all_replicas)"
wait "${WPID[a]}" || true

# ------------------------------------------------- a busy holder refuses
writer c busy
t0=$SECONDS
wait_for 20 "writer c to get the lease" granted c
log "writer c waited $((SECONDS - t0))s for the previous holder's lease to expire"
expect_err EBUSY --client-id 333 chunks /img 0 1M write
grep -q "^recall ino=.* answer=busy" "$T/c.out" || fail "writer c was not asked"
vc=$(version_of "$chunk" <"$T/c.out")

# ------------------------------------------------------- reads need no lease
recalls=$(grep -c '^recall' "$T/c.out")
out=$(op --client-id 444 chunks /img 0 4M)
grep -q "^chunk 0 $chunk $vc " <<<"$out" || fail "read listing: $out (writer has $vc)"
[[ $(grep -c '^recall' "$T/c.out") -eq $recalls ]] || fail "a read recalled the lease"

# -------------------------------------------- a dead holder loses the lease
kill -KILL "${WPID[c]}"
wait "${WPID[c]}" 2>/dev/null || true
t0=$(date +%s%N)
out=$(op --client-id 555 chunks /img 0 1M write)
waited=$((($(date +%s%N) - t0) / 1000000))
vd=$(version_of "$chunk" <<<"$out")
log "after the holder died the newcomer waited ${waited} ms"
[[ -n "$vd" && "${vd#v}" -gt "${vc#v}" ]] || fail "no fencing after expiry: $vc then '$out'"
((waited >= 500 && waited <= 8000)) || fail "waited $waited ms for a 2 s lease"

# The lease is per client: a second request of the holder needs no recall.
out=$(op --client-id 555 chunks /img 1M 1M write) || fail "holder's own second write: $out"

for i in 1 2 3; do dn_stop "$i"; done
nn_stop
pass
