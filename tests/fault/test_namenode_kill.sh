#!/usr/bin/env bash
# SIGKILL of the namenode during writes and metadata operations: clients
# reconnect and go on, and the namespace afterwards is exactly the committed
# one (every acknowledged mkdir is there, nothing else appears).
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "$FAST_NN" --datanode-args "$FAST_DN"
writer stream --path /w --size 32M --io 256K --seconds 12 --random --flush-every 16 --seed 6 \
    --model "$T/model" >"$T/w.log" 2>&1 &
w=$!
track_pid $w
keel mkdir /dirs
(
    for ((i = 0; i < 400; i++)); do
        if "$KEEL_BIN/keel" --namenode "$NN" --retry 20s mkdir "/dirs/d$i" 2>/dev/null; then
            echo "d$i"
        fi
        sleep 0.02
    done
) >"$T/acked" &
m=$!
track_pid $m
sleep 3
log "killing the namenode"
local_cluster kill-namenode
sleep 1
local_cluster start-namenode
wait $w || { cat "$T/w.log"; fail "writer failed across the namenode restart"; }
wait $m || true
writer verify --path /w --size 32M --io 256K --seed 6 --model "$T/model" >/dev/null || fail "data"
keel ls /dirs | sed 's|/$||' | sort >"$T/listed"
sort "$T/acked" >"$T/acked.sorted"
missing=$(comm -23 "$T/acked.sorted" "$T/listed" | wc -l)
[[ "$missing" -eq 0 ]] || fail "$missing acknowledged mkdirs are gone"
extra=$(comm -13 "$T/acked.sorted" "$T/listed" | wc -l)
# A mkdir whose answer was lost with the namenode may exist unacknowledged,
# but only one can be in flight at a time.
[[ "$extra" -le 1 ]] || fail "$extra directories appeared that were never acknowledged"
log "$(wc -l <"$T/acked") mkdirs acknowledged, all present"
pass
