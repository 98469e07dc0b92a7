#!/usr/bin/env bash
# A datanode whose data directory fills up (an 8 MiB tmpfs): the write that
# does not fit is reported to the writer as ENOSPC for that node and never
# acknowledged, nor is a later flush of that replica; what was written
# before still reads back; the namenode hears it in the next heartbeat
# ("full"); the datanode keeps running and shuts down cleanly. A scripted
# namenode (tests/tools/fakenn) shows what the heartbeats say.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

FULL="$T/full"
tmpfs_or_skip "$FULL" 8m
MOUNTS+=("$FULL")

fakenn_up 1M
"$KEEL_BIN/keel-datanode" --data "$FULL/dn" --namenode "$FNN" \
    --scrub-rate 0 >"$T/dnfull.log" 2>&1 &
dn=$!
track_pid $dn
wait_for 20 "the datanode to register" grep -q "^registered 1 " "$T/fakenn.out"
ADDR=$(tr -d '\n' <"$FULL/dn/listen.addr")
sleep 0.5
grep -q "^full 1" "$T/fakenn.out" && fail "full before anything was written"

# Whole chunks, 256 KiB at a time, until the filesystem refuses.
for ((c = 100; c < 120; c++)); do
    echo "create 1 $c 1" >>"$T/control"
    wait_for 10 "replica $c to be created" grep -q -x "create-done 1 $c 0" "$T/fakenn.out"
    out=$(dntool write --dn "$ADDR" --chunk $c --version 1 --len 256K --count 4 --span 1M \
        --seed $c --until-failure) || fail "write: $out"
    [[ -n "$(kv failed "$out")" ]] && break
done
log "chunk $c: $(tr '\n' ' ' <<<"$out")"
acked=$(kv acked "$out")
[[ "$(kv failed "$out")" == "1:ENOSPC" ]] || fail "expected ENOSPC from node 1: $out"
[[ $c -gt 103 ]] || fail "the disk filled too early (chunk $c)"
wait_for 10 "a heartbeat saying the disk is full" grep -q -x "full 1" "$T/fakenn.out"

# Never acknowledged afterwards: not the flush, not another write.
out=$(dntool flush --dn "$ADDR" --chunk $c --version 1) && fail "a flush after ENOSPC: $out"
[[ "$(kv status "$out")" == ENOSPC ]] || fail "flush after ENOSPC: $out"
out=$(dntool write --dn "$ADDR" --chunk $c --version 1 --offset 0 --len 4096 --seed $c) ||
    fail "write: $out"
[[ "$(kv failed "$out")" == "1:ENOSPC" ]] || fail "a later write must fail the same way: $out"

# The write the full disk cut short left each block with its old or its new
# bytes, and a checksum that vouches for them: the whole replica still reads.
out=$(dntool read --dn "$ADDR" --chunk $c --version 1 --len 1M --seed $c) || true
[[ "$(kv status "$out")" == OK ]] || fail "the replica the full disk cut no longer reads: $out"
grep -q "is corrupt\|is unusable" "$T/dnfull.log" && fail "a replica was found corrupt"

# What was acknowledged is intact and verified; the datanode still serves.
if ((acked > 0)); then
    out=$(dntool read --dn "$ADDR" --chunk $c --version 1 --len $((acked * 262144)) \
        --seed $c) || fail "read: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "acknowledged data damaged: $out"
fi
for ((k = 100; k < c; k++)); do
    out=$(dntool read --dn "$ADDR" --chunk $k --version 1 --len 1M --seed $k) ||
        fail "read of chunk $k: $out"
    [[ "$(kv match "$out")" == yes ]] || fail "chunk $k damaged: $out"
    dntool flush --dn "$ADDR" --chunk $k --version 1 >/dev/null || fail "flush of chunk $k"
done
grep -q "failed on disk: No space left on device" "$T/dnfull.log" || fail "no log of the failure"

kill -TERM $dn $fakenn
wait $dn || fail "the datanode did not exit cleanly"
wait $fakenn || fail "the fake namenode did not exit cleanly"
pass
