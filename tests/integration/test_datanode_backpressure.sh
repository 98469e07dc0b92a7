#!/usr/bin/env bash
# Backpressure (--max-inflight). A client keeps 256 writes in flight down a
# chain whose second datanode is frozen (SIGSTOP) for two seconds: the first
# datanode holds every payload until the chain answers. Unbounded, it ends
# up holding megabytes; with --max-inflight 1M it stops reading the client's
# connection past the bound and resumes once the chain drains, holding
# little more than the bound. Either way every acknowledged write is on both
# replicas afterwards.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

fakenn_up 4M

declare -A pid
start_dn() { # I LOG [flags...]
    local i=$1 logf=$2
    shift 2
    "$KEEL_BIN/keel-datanode" --data "$T/dn$i" --namenode "$FNN" --domain "d$i" \
        --scrub-rate 0 --peer-timeout 10s "$@" >"$logf" 2>&1 &
    pid[$i]=$!
    track_pid $!
}
registered() { (($(grep -c "^registered $1 " "$T/fakenn.out") >= $2)); }
start_dn 1 "$T/dn1-unbounded.log" --max-inflight 0
wait_for 20 "datanode 1 to register" registered 1 1
start_dn 2 "$T/dn2.log"
wait_for 20 "datanode 2 to register" registered 2 1
addr() { tr -d '\n' <"$T/dn$1/listen.addr"; }
control() { echo "$*" >>"$T/control"; }
event() { grep -q -x -e "$1" "$T/fakenn.out"; }

for c in 40 41; do
    for i in 1 2; do
        control create $i $c 1
        wait_for 10 "chunk $c on datanode $i" event "create-done $i $c 0"
    done
done

# Streams writes to chunk C down 1 -> 2 with datanode 2 frozen for a while,
# then checks both replicas against what was acknowledged.
stalled_stream() { # CHUNK
    local c=$1 out i
    "$DNTOOL" stream --dn "$(addr 1)" --chain "2@$(addr 2)" --chunk "$c" --version 1 --span 4M \
        --seconds 4 --inflight 256 --seed "$c" --journal "$T/journal.$c" >"$T/stream.$c" 2>&1 &
    local streamer=$!
    track_pid $streamer
    sleep 0.5
    kill -STOP "${pid[2]}"
    sleep 2
    kill -CONT "${pid[2]}"
    wait $streamer || fail "stream: $(cat "$T/stream.$c")"
    out=$(cat "$T/stream.$c")
    [[ "$(kv ended "$out")" == time && "$(kv failed "$out")" == 0 ]] || fail "stream: $out"
    (($(kv acked "$out") >= 256)) || fail "too few writes: $out"
    for i in 1 2; do
        out=$(dntool verify-stream --dn "$(addr $i)" --chunk "$c" --version 1 \
            --journal "$T/journal.$c") || fail "datanode $i, chunk $c: $out"
        [[ "$(kv mismatched "$out")" == 0 ]] || fail "datanode $i, chunk $c: $out"
    done
    log "chunk $c: $(kv acked "$(cat "$T/stream.$c")") writes acknowledged and on both replicas"
}
stop_dn1() {
    kill -TERM "${pid[1]}"
    wait "${pid[1]}" || fail "datanode 1 did not exit cleanly"
}
peak() { sed -n 's/.*at most \([0-9]*\) bytes of requests were in progress.*/\1/p' "$1"; }

stalled_stream 40
stop_dn1
unbounded=$(peak "$T/dn1-unbounded.log")
grep -q "reads paused" "$T/dn1-unbounded.log" && fail "reads paused without a bound"

start_dn 1 "$T/dn1-bounded.log" --max-inflight 1M
wait_for 20 "datanode 1 to register again" registered 1 2
stalled_stream 41
stop_dn1
bounded=$(peak "$T/dn1-bounded.log")
log "most bytes held by requests in progress: ${unbounded} unbounded, ${bounded} with --max-inflight 1M"
grep -q "reads paused" "$T/dn1-bounded.log" || fail "the bound never paused reading"
grep -q "still charged at the end\|given back, only" "$T"/dn1-*.log && fail "the accounting is off"
[[ -n "$unbounded" && -n "$bounded" ]] || fail "no peak logged"
((unbounded > 4 * 1048576)) || fail "the stalled chain held only $unbounded bytes unbounded"
((bounded <= 2 * 1048576)) || fail "$bounded bytes held with a bound of 1 MiB"

kill -TERM "${pid[2]}" $fakenn
wait "${pid[2]}" || fail "datanode 2 did not exit cleanly"
wait $fakenn || fail "fakenn did not exit cleanly"
pass
