#!/usr/bin/env bash
# Promise 9 for the namenode: kill -9 in the middle of a burst of creates,
# restart, and the namespace is exactly the committed one: every create
# that was acknowledged is there with its attributes, nothing appears that
# was never sent, inode numbers are not reused, chunk metadata survives,
# and safe mode ends once the datanodes have reported.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/nn_lib.sh"

# Client 9's write lease must outlive the test: an expired one is fenced (a
# version change on purpose), which a slow burst once ran into.
NN_FLAGS=(--dead-timeout 3s --heartbeat-interval 200ms --safe-mode-timeout 20s --lease-timeout 120s)
nn_format --chunk-size 1M --replication 3
nn_start "${NN_FLAGS[@]}"
dn_start 1 d1
dn_start 2 d2
dn_start 3 d3
wait_for 20 "3 live datanodes" has_alive 3

# Chunk metadata made before the crash.
op create /disk >/dev/null
before=$(op --client-id 9 chunks /disk 0 4M write | grep '^chunk ' | awk '{ print $2, $3, $4 }')
[[ $(wc -l <<<"$before") -eq 4 ]] || fail "chunks before the crash: $before"

# A warm-up burst that runs to the end: every create acknowledged.
op mkdir /warm >/dev/null
out=$("$NNP" burst --namenode "$NN" --dir /warm --count 2000 --inflight 64 --log "$T/warm.txt")
log "warm-up: $out"
[[ "$out" == "sent=2000 acked=2000 "* ]] || fail "warm-up burst: $out"

# A durable size survives the crash; a lazy one given just before it may.
op --client-id 9 extend /disk 6M durable >/dev/null || fail "durable extend"
op --client-id 9 extend /disk 7M >/dev/null || fail "lazy extend"

op mkdir /burst >/dev/null
"$NNP" burst --namenode "$NN" --dir /burst --count 200000 --inflight 128 \
    --log "$T/burst.txt" >"$T/burst.out" 2>>"$T/burst.log" &
BURST=$!
track_pid "$BURST"
acks() { grep -c '^ack ' "$T/burst.txt" 2>/dev/null || true; }
enough_acks() { [[ $(acks) -ge 3000 ]]; }
wait_for 60 "3000 acknowledged creates" enough_acks
kill -KILL "$NN_PID"
wait "$NN_PID" 2>/dev/null || true
wait "$BURST" || fail "the burst tool failed"
log "burst: $(cat "$T/burst.out") when the namenode was killed"

nn_start "${NN_FLAGS[@]}"
wait_for 20 "the datanodes back" has_alive 3
safe_off() { op status | grep -q "safe_mode=0"; }
wait_for 30 "safe mode to end" safe_off

# Exactly the committed namespace.
op ls /burst 1000 >"$T/listed.txt" || fail "listing after restart: $(cat "$T/listed.txt")"
sed -n 's|^ack /burst/||p' "$T/burst.txt" | sort >"$T/acked.txt"
sed -n 's|^sent /burst/||p' "$T/burst.txt" | sort >"$T/sent.txt"
sort -o "$T/listed.txt" "$T/listed.txt"
nacked=$(wc -l <"$T/acked.txt")
nlisted=$(wc -l <"$T/listed.txt")
nsent=$(wc -l <"$T/sent.txt")
log "sent $nsent, acknowledged $nacked, present after restart $nlisted"
((nacked >= 3000)) || fail "too few acknowledged creates: $nacked"
lost=$(comm -23 "$T/acked.txt" "$T/listed.txt" | head -5)
[[ -z "$lost" ]] || fail "acknowledged creates lost: $lost"
ghosts=$(comm -13 "$T/sent.txt" "$T/listed.txt" | head -5)
[[ -z "$ghosts" ]] || fail "files that were never created: $ghosts"
((nlisted - nacked <= 128)) || fail "$((nlisted - nacked)) unacknowledged creates present"

# Attributes came through: each file's size is its number.
for name in $(head -1 "$T/acked.txt") $(tail -1 "$T/acked.txt") $(shuf -n 20 "$T/acked.txt"); do
    n=$((10#${name#f}))
    out=$(op stat "/burst/$name")
    [[ "$out" == *" size=$n "* && "$out" == *"mode=100600"* ]] || fail "stat $name: $out"
done
[[ $(op ls /warm | wc -l) -eq 2000 ]] || fail "the warm-up files changed"

size=$(op stat /disk | sed -n 's/.* size=\([0-9]*\) .*/\1/p')
[[ "$size" == 6291456 || "$size" == 7340032 ]] || fail "the durable size of /disk is lost: $size"

# Chunks and versions survived; inode numbers are never reused.
after=$(op chunks /disk 0 4M | grep '^chunk ' | awk '{ print $2, $3, $4 }')
[[ "$after" == "$before" ]] || fail "chunk map changed: before '$before' after '$after'"
max_ino=$(for f in $(tail -50 "$T/listed.txt"); do op stat "/burst/$f"; done |
    sed -n 's/^ino=\([0-9]*\).*/\1/p' | sort -n | tail -1)
new_ino=$(op create /fresh | sed -n 's/.*ino=\([0-9]*\).*/\1/p')
((new_ino > max_ino)) || fail "inode $new_ino reused (max before $max_ino)"

# Still writable after the restart.
out=$(op chunks /fresh 0 1M write)
grep -q '^chunk 0 ' <<<"$out" || fail "allocation after restart: $out"

for i in 1 2 3; do dn_stop "$i"; done
nn_stop
batches=$(grep -o "operations committed in [0-9]* transactions" "$T/nn.log" | tail -1)
log "second run: $batches"
pass
