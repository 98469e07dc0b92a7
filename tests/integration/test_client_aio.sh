#!/usr/bin/env bash
# The async API with 64 requests in flight.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M
"$KEEL_BIN/keel_writer" aio --namenode "$NN" --path /aio --depth 64 || fail "async API"
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "fsck after async writes"; }
pass
