#!/usr/bin/env bash
# 8 threads write random overlapping ranges through libkeel at once: the data
# matches the writer's model, and every replica of every chunk is identical
# (fsck --verify).
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M
"$KEEL_BIN/keel_writer" overlap --namenode "$NN" --path /overlap --threads 8 --ops 200 \
    --span 6M --seed 7 || fail "the data does not match the model"
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas differ"; }
pass
