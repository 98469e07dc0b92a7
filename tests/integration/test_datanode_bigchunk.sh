#!/usr/bin/env bash
# Copies of a 1 GiB chunk between datanode processes (scripted namenode,
# tests/tools/fakenn). Its 262144 block checksums (2 MiB) do not fit in a
# frame header (1 MiB), so they travel as the payload of the last piece. The
# chunk is sparse: only the blocks that hold data travel, and the copy stays
# sparse on the target. A delta of it then sends the one block that changed.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

fakenn_up 1G

pids=()
for i in 1 2; do
    "$KEEL_BIN/keel-datanode" --data "$T/dn$i" --namenode "$FNN" --domain "d$i" \
        --scrub-rate 0 --peer-timeout 5s >"$T/dn$i.log" 2>&1 &
    pids+=($!)
    track_pid $!
    wait_for 20 "datanode $i to register" grep -q "^registered $i " "$T/fakenn.out"
done
addr() { tr -d '\n' <"$T/dn$1/listen.addr"; }
control() { echo "$*" >>"$T/control"; }
event() { grep -q -x -e "$1" "$T/fakenn.out"; }
G=1073741824

control create 1 5 1
wait_for 20 "the replica to be created" event "create-done 1 5 0"
w() { dntool write --dn "$(addr 1)" --chunk 5 --span 1G "$@" >/dev/null || fail "write $*"; }
w --version 1 --offset 0 --len 4K --seed 1
w --version 1 --offset 300M --len 64K --seed 2
w --version 1 --offset $((G - 4096)) --len 4K --seed 3

control replicate 1 5 1 2
# 18 blocks of data; the 1 GiB - 72 KiB of holes stay home.
wait_for 60 "the copy" event "replicate-done 1 5 1 2 0 73728 0"
wait_for 10 "datanode 2 to report the replica" event "report 2 5 1 $G ok"
src=$(dntool checksums --dn "$(addr 1)" --chunk 5 --version 1) || fail "checksums: $src"
dst=$(dntool checksums --dn "$(addr 2)" --chunk 5 --version 1) || fail "checksums: $dst"
[[ "$(kv blocks "$dst")" == 262144 ]] || fail "blocks: $dst"
[[ "$(kv digest "$src")" == "$(kv digest "$dst")" ]] || fail "checksums differ: $src / $dst"
r() { dntool read --dn "$(addr 2)" --chunk 5 --span 1G "$@" >/dev/null || fail "read $*"; }
r --version 1 --offset 0 --len 4K --seed 1
r --version 1 --offset 300M --len 64K --seed 2
r --version 1 --offset $((G - 4096)) --len 4K --seed 3
r --version 1 --offset 700M --len 1M --zeros
kib=$(du -k "$(chunk_file "$T/dn2" 5 data)" | cut -f1)
((kib < 4096)) || fail "the copy takes $kib KiB on disk: not sparse"

# One more block on the source and a new version: the delta sends that block.
w --version 1 --offset 512M --len 4K --seed 4
control setversion 1 5 1 2
wait_for 10 "the version change" event "setversion-done 1 5 0"
control replicate 1 5 2 2 delta push
wait_for 60 "the delta" event "replicate-done 1 5 2 2 0 4096 73728"
wait_for 10 "datanode 2 to report version 2" event "report 2 5 2 $G ok"
src=$(dntool checksums --dn "$(addr 1)" --chunk 5 --version 2) || fail "checksums: $src"
dst=$(dntool checksums --dn "$(addr 2)" --chunk 5 --version 2) || fail "checksums: $dst"
[[ "$(kv digest "$src")" == "$(kv digest "$dst")" ]] || fail "checksums differ after the delta"
r --version 2 --offset 512M --len 4K --seed 4
r --version 2 --offset 300M --len 64K --seed 2

for pid in "${pids[@]}" $fakenn; do kill -TERM "$pid"; done
for pid in "${pids[@]}" $fakenn; do wait "$pid" || fail "process $pid did not exit cleanly"; done
pass
