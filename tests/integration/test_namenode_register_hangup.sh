#!/usr/bin/env bash
# Datanodes that hang up while their registration is being committed: the
# namenode must not keep their closed connections (a reference nothing
# drops, found at exit as a leak), must keep serving, and must stop cleanly
# when SIGTERM arrives with such registrations still in flight. The hasty
# datanodes are bench/nn-reporter's fake ones with a 1 ms timeout: they
# send RegisterReq and close at once.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/nn_lib.sh"

hasty() { "$KEEL_BIN/nn-reporter" --namenode "$NN" --chunks 1 --datanodes 4 --timeout 1ms \
    >>"$T/hasty.log" 2>&1 || true; }

nn_format --chunk-size 1M
nn_start --heartbeat-interval 200ms --dead-timeout 2s
for _ in 1 2 3; do hasty; done
grep -q "hung up" "$T/nn.log" || log "no registration was still in flight at a hang-up this time"

# Still serving: a real (fake) datanode registers and stays alive.
dn_start 1 d1
wait_for 20 "a live datanode" has_alive 1
dn_stop 1

# SIGTERM right behind registrations in flight: a clean exit (status 0,
# nothing for the leak checker).
hasty
nn_stop
grep -q "handles left open" "$T/nn.log" && fail "the namenode left handles open at exit"
pass
