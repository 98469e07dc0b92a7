#!/usr/bin/env bash
# Promise 5 through libkeel: -EBUSY while the holder writes, handover when it
# is idle, and the old holder's writes fenced off at the datanodes.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "--lease-timeout 5s"
"$KEEL_BIN/keel_writer" lease --namenode "$NN" --path /leased || fail "lease semantics"
pass
