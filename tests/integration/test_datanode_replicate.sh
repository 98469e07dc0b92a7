#!/usr/bin/env bash
# Replication between datanode processes (CMD_REPLICATE). The namenode of
# this part does not schedule re-replication yet, so a scripted namenode
# (tests/tools/fakenn) sends the commands. A copy must arrive intact: same
# bytes, same block checksums and length as its source, sparse holes
# included (and not sent), installed atomically and reported by the target;
# ReplicateDone tells the namenode. A copy from a damaged source fails and installs
# nothing; the source is reported corrupt.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

fakenn_up 4M

pids=()
for i in 1 2 3; do
    "$KEEL_BIN/keel-datanode" --data "$T/dn$i" --namenode "$FNN" --domain "d$i" \
        --scrub-rate 0 --peer-timeout 2s >"$T/dn$i.log" 2>&1 &
    pids+=($!)
    track_pid $!
    wait_for 20 "datanode $i to register" grep -q "^registered $i " "$T/fakenn.out"
done
addr() { tr -d '\n' <"$T/dn$1/listen.addr"; }
control() { echo "$*" >>"$T/control"; }
event() { grep -q -x -e "$1" "$T/fakenn.out"; }

# A sparse replica on datanode 1: data, a hole, data.
control create 1 77 3
wait_for 10 "the replica to be created" event "create-done 1 77 0"
out=$(dntool write --dn "$(addr 1)" --chunk 77 --version 3 --len 512K --count 3 --span 4M \
    --seed 21) || fail "write: $out"
[[ "$(kv acked "$out")" == 3 ]] || fail "write: $out"
out=$(dntool write --dn "$(addr 1)" --chunk 77 --version 3 --offset 3000001 --len 300000 \
    --span 4M --seed 21) || fail "write: $out"
[[ "$(kv acked "$out")" == 1 ]] || fail "write: $out"

control replicate 1 77 3 2
wait_for 20 "the copy to datanode 2" event "replicate-done 1 77 3 2 0 [0-9]* 0"
wait_for 10 "datanode 2 to report its new replica" event "report 2 77 3 3300001 ok"
bytes=$(grep "^replicate-done 1 77 3 2 0 " "$T/fakenn.out" | awk '{print $7}')
# Every block holding data travels (1.5 MiB + 300000 bytes); the 1.4 MiB hole
# between them does not.
[[ "$bytes" -ge $((1572864 + 300000)) ]] || fail "only $bytes bytes were sent"
[[ "$bytes" -lt 3300001 ]] || fail "$bytes bytes were sent: the hole travelled too"

src=$(dntool checksums --dn "$(addr 1)" --chunk 77 --version 3) || fail "checksums: $src"
dst=$(dntool checksums --dn "$(addr 2)" --chunk 77 --version 3) || fail "checksums: $dst"
[[ "$(kv digest "$src")" == "$(kv digest "$dst")" ]] || fail "checksums differ: $src / $dst"
[[ "$(kv length "$dst")" == 3300001 ]] || fail "length: $dst"
out=$(dntool read --dn "$(addr 2)" --chunk 77 --version 3 --len 1536K --seed 21) || fail "$out"
[[ "$(kv match "$out")" == yes ]] || fail "copied data: $out"
out=$(dntool read --dn "$(addr 2)" --chunk 77 --version 3 --offset 1536K \
    --len $((3000001 - 1572864)) --zeros) || fail "$out"
[[ "$(kv match "$out")" == yes ]] || fail "copied hole: $out"
out=$(dntool read --dn "$(addr 2)" --chunk 77 --version 3 --offset 3000001 --len 300000 \
    --seed 21) || fail "$out"
[[ "$(kv match "$out")" == yes ]] || fail "copied tail: $out"
[[ -z "$(ls -A "$T/dn2/tmp")" ]] || fail "temporary files left on datanode 2"
# The copy is a replica like any other: it takes writes at its version.
out=$(dntool write --dn "$(addr 2)" --chunk 77 --version 3 --offset 0 --len 4K --seed 21) ||
    fail "$out"
[[ "$(kv acked "$out")" == 1 ]] || fail "write to the copy: $out"

# A copy to a node that has the chunk at this version is refused there.
control replicate 1 77 3 2
wait_for 20 "the refused copy" event "replicate-done 1 77 3 2 -17 [0-9]* 0"

# A damaged source: the copy fails, nothing is installed, the source is reported.
flip_byte "$(chunk_file "$T/dn1" 77 data)" 3100000 # in the last piece
control replicate 1 77 3 3
wait_for 20 "the failed copy" event "replicate-done 1 77 3 3 -5 [0-9]* 0"
wait_for 10 "the source to be reported corrupt" event "report 1 77 3 3300001 corrupt"
out=$(dntool read --dn "$(addr 3)" --chunk 77 --version 3 --len 4K) && fail "installed: $out"
[[ "$(kv status "$out")" == ENOENT ]] || fail "datanode 3: $out"
grep -q "receiving chunk 000000000000004d" "$T/dn3.log" || fail "datanode 3 got no piece"
half_copy_gone() { [[ -z "$(ls -A "$T/dn3/tmp")" ]]; }
wait_for 40 "datanode 3 to drop the half copy" half_copy_gone

for pid in "${pids[@]}" $fakenn; do kill -TERM "$pid"; done
for pid in "${pids[@]}" $fakenn; do wait "$pid" || fail "process $pid did not exit cleanly"; done
pass
