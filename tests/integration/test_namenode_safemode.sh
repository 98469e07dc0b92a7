#!/usr/bin/env bash
# Safe mode after a restart: until block reports cover the threshold share
# of known chunks (or the timeout passes) reads are served but no replica is
# ordered deleted, not even a replica of a chunk the namenode has never
# heard of; once safe mode ends, that orphan is deleted.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/nn_lib.sh"

nn_format --chunk-size 1M --replication 3
nn_start --heartbeat-interval 200ms --dead-timeout 5s
dn_start 1 d1
dn_start 2 d2
dn_start 3 d3
wait_for 20 "3 live datanodes" has_alive 3

# One chunk with a single replica, one with three.
op create /one repl=1 >/dev/null
one=$(op --client-id 5 chunks /one 0 1M write | grep '^chunk ')
holder=$(awk '{ print $5 }' <<<"$one" | sed 's/replicas=//')
op create /three >/dev/null
op --client-id 5 chunks /three 0 1M write | grep -q '^chunk ' || fail "allocation"
for i in 1 2 3; do dn_stop "$i"; done
nn_stop

# A datanode that does not hold /one's chunk comes back first, carrying a
# replica of a chunk that never existed.
for i in 1 2 3; do
    [[ $(dn_id "$i") != "$holder" ]] && { first=$i; break; }
done
echo "replica ffffff0 1 0" >>"$T/dn$first.state"

nn_start --heartbeat-interval 200ms --dead-timeout 5s --safe-mode-threshold 100 \
    --safe-mode-timeout 6s
t0=$SECONDS
out=$(op status)
grep -q "safe_mode=1" <<<"$out" || fail "not in safe mode after a restart: $out"
op stat /one >/dev/null || fail "reads refused in safe mode"
op ls / >/dev/null || fail "listing refused in safe mode"
dn_start "$first" "d$first"
wait_for 10 "datanode $first back" has_alive 1
sleep 2
grep -q "^replica ffffff0 " "$T/dn$first.state" || fail "a replica was deleted in safe mode"
grep -q "safe_mode=1" <<<"$(op status)" || fail "safe mode ended with half the chunks reported"

safe_off() { op status | grep -q "safe_mode=0"; }
wait_for 20 "safe mode to time out" safe_off
((SECONDS - t0 >= 5)) || fail "safe mode ended after $((SECONDS - t0))s, before its timeout"
orphan_gone() { ! grep -q "^replica ffffff0 " "$T/dn$first.state"; }
wait_for 10 "the orphan deleted after safe mode" orphan_gone
grep -q "safe mode: off after the timeout" "$T/nn.log" || fail "no log line for the timeout"

dn_stop "$first"
nn_stop
pass
