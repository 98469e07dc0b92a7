#!/usr/bin/env bash
# Repair copies between datanode processes, driven by the scripted namenode
# (tests/tools/fakenn), with commands pushed at once (CommandReq) or sent in
# heartbeat replies:
#   - delta resync: a stale replica is brought up to date by sending only the
#     blocks that differ; the result is byte-identical to the source and the
#     bytes not sent are counted (log line and ReplicateDone.bytes_saved);
#   - a delta to a node without the chunk, or one where most blocks differ,
#     goes whole;
#   - --replication-rate measurably slows a copy; --replication-streams 1
#     makes a second copy wait for the first;
#   - a fuzzy copy, taken while the source replica is being written, ends
#     well and leaves a stale (version - 1), self-consistent replica, which a
#     delta copy then makes identical to the source.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

fakenn_up 4M

declare -A pid
start_dn() { # I [flags...]
    local i=$1
    shift
    "$KEEL_BIN/keel-datanode" --data "$T/dn$i" --namenode "$FNN" --domain "d$i" \
        --scrub-rate 0 --peer-timeout 2s "$@" >>"$T/dn$i.log" 2>&1 &
    pid[$i]=$!
    track_pid $!
}
for i in 1 2 3; do
    start_dn $i
    wait_for 20 "datanode $i to register" grep -q "^registered $i " "$T/fakenn.out"
done
addr() { tr -d '\n' <"$T/dn$1/listen.addr"; }
control() { echo "$*" >>"$T/control"; }
event() { grep -q -x -e "$1" "$T/fakenn.out"; }
# The Nth time an event was seen: waiting on one seen before would not wait.
seen() { (($(grep -c -x -e "$2" "$T/fakenn.out") >= $1)); }
done_line() { grep -x -e "$1" "$T/fakenn.out" | tail -n 1; }
same_files() { cmp -s "$(chunk_file "$T/dn$1" "$3" data)" "$(chunk_file "$T/dn$2" "$3" data)"; }
ms() { date +%s%3N; }

# Chunk 90 on datanodes 1 and 2 at version 3, 4 MiB written through both.
control create 1 90 3
control create 2 90 3
wait_for 10 "the replicas to be created" event "create-done 2 90 0"
wait_for 10 "the replicas to be created" event "create-done 1 90 0"
out=$(dntool write --dn "$(addr 1)" --chain "2@$(addr 2)" --chunk 90 --version 3 --len 1M \
    --count 4 --span 4M --seed 5) || fail "write: $out"
[[ "$(kv acked "$out")" == 4 ]] || fail "write: $out"
same_files 1 2 90 || fail "the two replicas differ before the test"

# Datanode 2 misses two writes (4 blocks) and a version change: it is stale.
out=$(dntool write --dn "$(addr 1)" --chunk 90 --version 3 --offset $((512 * 1024 + 100)) \
    --len 8K --span 4M --seed 6) || fail "write: $out"
out=$(dntool write --dn "$(addr 1)" --chunk 90 --version 3 --offset 3M --len 4K --span 4M \
    --seed 6) || fail "write: $out"
control setversion 1 90 3 4
wait_for 10 "the version change" event "setversion-done 1 90 0"
same_files 1 2 90 && fail "the stale replica already has the new data"

# Delta resync, pushed at once: 4 blocks travel, the rest is counted saved.
control replicate 1 90 4 2 delta push
wait_for 10 "the command to be taken" event "command-done 1 90 0"
wait_for 20 "the delta copy" event "replicate-done 1 90 4 2 0 [0-9]* [0-9]*"
line=$(done_line "replicate-done 1 90 4 2 0 [0-9]* [0-9]*")
[[ "$(awk '{print $7}' <<<"$line")" == 16384 ]] || fail "delta sent: $line"
[[ "$(awk '{print $8}' <<<"$line")" == $((4194304 - 16384)) ]] || fail "delta saved: $line"
grep -q "delta resync of chunk 000000000000005a: sent 16384 of 4194304 bytes" "$T/dn1.log" ||
    fail "no delta line in the source's log"
wait_for 10 "datanode 2 to report version 4" event "report 2 90 4 4194304 ok"
same_files 1 2 90 || fail "the resynced replica is not byte-identical to its source"
src=$(dntool checksums --dn "$(addr 1)" --chunk 90 --version 4) || fail "checksums: $src"
dst=$(dntool checksums --dn "$(addr 2)" --chunk 90 --version 4) || fail "checksums: $dst"
[[ "$(kv digest "$src")" == "$(kv digest "$dst")" ]] || fail "checksums differ: $src / $dst"
out=$(dntool read --dn "$(addr 2)" --chunk 90 --version 4 --offset $((512 * 1024 + 100)) \
    --len 8K --seed 6) || fail "read of the resent blocks: $out"
out=$(dntool read --dn "$(addr 2)" --chunk 90 --version 4 --offset 1M --len 1M --seed 5) ||
    fail "read of the kept blocks: $out"
[[ -z "$(ls -A "$T/dn2/tmp")" ]] || fail "temporary files left on datanode 2"

# A delta to a node that has no replica goes whole.
t0=$(ms)
control replicate 1 90 4 3 delta
wait_for 20 "the copy to datanode 3" event "replicate-done 1 90 4 3 0 4194304 0"
unlimited_ms=$(($(ms) - t0))
same_files 1 3 90 || fail "the whole copy differs from its source"

# Most blocks differ: the delta is not worth it and the chunk goes whole.
out=$(dntool write --dn "$(addr 1)" --chunk 90 --version 4 --len 1M --count 4 --span 4M \
    --seed 7) || fail "write: $out"
control setversion 1 90 4 5
wait_for 10 "the second version change" seen 2 "setversion-done 1 90 0"
control replicate 1 90 5 2 delta
wait_for 20 "the second copy to datanode 2" event "replicate-done 1 90 5 2 0 4194304 0"
grep -q "blocks differ on node 2, sending it whole" "$T/dn1.log" || fail "no reason logged"
same_files 1 2 90 || fail "the whole copy differs from its source"

# Pacing: 1 MiB/s and one stream. A second chunk to copy as well.
control create 1 91 1
wait_for 10 "chunk 91" event "create-done 1 91 0"
out=$(dntool write --dn "$(addr 1)" --chunk 91 --version 1 --len 1M --count 4 --span 4M \
    --seed 8) || fail "write: $out"
kill -TERM "${pid[1]}"
wait "${pid[1]}" || fail "datanode 1 did not stop cleanly"
start_dn 1 --replication-rate 1M --replication-streams 1
back() { (($(grep -c "^registered 1 " "$T/fakenn.out") >= 2)); }
wait_for 20 "datanode 1 to come back" back
t0=$(ms)
control replicate 1 90 5 3
control replicate 1 91 1 2
wait_for 30 "the paced copy" event "replicate-done 1 90 5 3 0 4194304 0"
paced_ms=$(($(ms) - t0))
wait_for 30 "the queued copy" event "replicate-done 1 91 1 2 0 4194304 0"
both_ms=$(($(ms) - t0))
log "4 MiB copied in ${unlimited_ms} ms unlimited, ${paced_ms} ms at 1 MiB/s; both paced copies in ${both_ms} ms"
((paced_ms >= 3000)) || fail "4 MiB at 1 MiB/s took only ${paced_ms} ms"
((paced_ms > 2 * unlimited_ms)) || fail "the rate did not slow the copy (${paced_ms} ms vs ${unlimited_ms} ms)"
((both_ms >= 6500)) || fail "two paced copies of 4 MiB on one stream took only ${both_ms} ms"
grep -q "copy of chunk 000000000000005b to node 2 waits for a stream" "$T/dn1.log" ||
    fail "the second copy did not wait for a stream"
first_done=$(grep -n "copied chunk 000000000000005a version 5 to node 3" "$T/dn1.log" | cut -d: -f1)
second_start=$(grep -n "copying chunk 000000000000005b" "$T/dn1.log" | tail -n 1 | cut -d: -f1)
[[ -n "$first_done" && -n "$second_start" && "$second_start" -gt "$first_done" ]] ||
    fail "the queued copy started before the first ended"
same_files 1 3 90 || fail "the paced copy differs from its source"
same_files 1 2 91 || fail "the queued copy differs from its source"

# A fuzzy copy at 1 MiB/s (4 s) while random writes go to the source for 3 s.
control create 1 92 2
wait_for 10 "chunk 92" event "create-done 1 92 0"
out=$(dntool write --dn "$(addr 1)" --chunk 92 --version 2 --len 1M --count 4 --span 4M \
    --seed 9) || fail "write: $out"
dntool stream --dn "$(addr 1)" --chunk 92 --version 2 --journal "$T/j92" --span 4M \
    --seconds 3 --flush-every 8 >"$T/stream92.out" 2>&1 &
stream=$!
track_pid $stream
control replicate 1 92 2 3 fuzzy
wait_for 30 "the fuzzy copy" event "replicate-done 1 92 2 3 0 [0-9]* 0 fuzzy"
wait $stream || fail "the writes during the copy: $(cat "$T/stream92.out")"
[[ -s "$T/j92" ]] || fail "no write went on during the copy"
grep -q "changed during the copy" "$T/dn1.log" && fail "a fuzzy copy checked for changes"
# Datanode 3 has version 1, the whole chunk long, and every block reads back
# (its checksums agree with its data).
wait_for 10 "datanode 3 to report the stale copy" event "report 3 92 1 4194304 ok"
out=$(dntool read --dn "$(addr 3)" --chunk 92 --version 1 --len 4M --seed 9) || true # data differs
[[ "$(kv status "$out")" == OK ]] || fail "the fuzzy copy does not read back: $out"
# The delta makes it current and identical (it goes whole when the writes
# touched most blocks after they were sent).
control replicate 1 92 2 3 delta
wait_for 20 "the delta after the fuzzy copy" event "replicate-done 1 92 2 3 0 [0-9]* [0-9]*"
line=$(done_line "replicate-done 1 92 2 3 0 [0-9]* [0-9]*")
# Blocks written after they were sent had to travel again.
(($(awk '{print $7}' <<<"$line") > 0)) || fail "no write landed during the fuzzy copy: $line"
wait_for 10 "datanode 3 to report version 2" event "report 3 92 2 [0-9]* ok"
same_files 1 3 92 || fail "after its delta the fuzzy copy differs from its source"
src=$(dntool checksums --dn "$(addr 1)" --chunk 92 --version 2) || fail "checksums: $src"
dst=$(dntool checksums --dn "$(addr 3)" --chunk 92 --version 2) || fail "checksums: $dst"
[[ "$src" == "$dst" ]] || fail "after its delta: $src / $dst"

for i in 1 2 3; do kill -TERM "${pid[$i]}"; done
kill -TERM $fakenn
for i in 1 2 3; do wait "${pid[$i]}" || fail "datanode $i did not exit cleanly"; done
wait $fakenn || fail "fakenn did not exit cleanly"
pass
