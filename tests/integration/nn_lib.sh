# Shared functions for the namenode integration tests (sourced after tests/lib.sh):
# a real keel-namenode in $META, fake datanodes and clients from
# tests/tools/nnprobe.c speaking the real RPC. Logs go to $T/*.log, where
# lib.sh looks for sanitizer reports.

NNP="$KEEL_BIN/nnprobe"
META="$T/meta"
NN=""
NN_PID=""
declare -A DN_PID=()

# nn_format [--chunk-size S] [--replication R]
nn_format() {
    "$KEEL_BIN/keel-namenode" --meta "$META" --format "$@" >>"$T/nn.log" 2>&1 ||
        fail "format failed"
}

# nn_start [flags...]: starts the namenode (on $NN's port if set) and waits
# for it to listen.
nn_start() {
    local listen=${NN:-127.0.0.1:0}
    rm -f "$META/listen.addr"
    "$KEEL_BIN/keel-namenode" --meta "$META" --listen "$listen" "$@" >>"$T/nn.log" 2>&1 &
    NN_PID=$!
    track_pid "$NN_PID"
    wait_for 20 "the namenode to listen" test -s "$META/listen.addr"
    NN=$(tr -d '\n' <"$META/listen.addr")
}

# nn_stop: SIGTERM, and the namenode must exit 0 (clean shutdown).
nn_stop() {
    local rc=0
    kill -TERM "$NN_PID"
    wait "$NN_PID" || rc=$?
    [[ $rc -eq 0 ]] || fail "keel-namenode exited $rc on SIGTERM"
}

# dn_start I DOMAIN [nnprobe dn flags...]
dn_start() {
    local i=$1 dom=$2
    shift 2
    "$NNP" dn --namenode "$NN" --state "$T/dn$i.state" --domain "$dom" "$@" >>"$T/dn$i.log" 2>&1 &
    DN_PID[$i]=$!
    track_pid "${DN_PID[$i]}"
}

dn_stop() {
    kill -TERM "${DN_PID[$1]}" 2>/dev/null || true
    wait "${DN_PID[$1]}" 2>/dev/null || true
}

# The node id a fake datanode was given.
dn_id() { sed -n 's/^node //p' "$T/dn$1.state"; }

op() { "$NNP" op --namenode "$NN" "$@"; }

# expect_err ENAME op-args...: the operation must fail with that errno.
expect_err() {
    local want=$1 out
    shift
    if out=$(op "$@"); then
        fail "op $* succeeded, expected $want: $out"
    fi
    [[ "$out" == "ERR $want"* ]] || fail "op $* gave '$out', expected $want"
}

alive_nodes() { op status | grep -c ' alive ' || true; }
has_alive() { [[ $(alive_nodes) -ge $1 ]]; }
node_state() { op status | awk -v id="$1" '$1 == "node" && $2 == id { print $3 }'; }
node_is() { [[ "$(node_state "$1")" == "$2" ]]; }

# Replica lines "chunk version length" over every fake datanode's state.
all_replicas() { cat "$T"/dn*.state 2>/dev/null | sed -n 's/^replica //p'; }
replicas_of() { all_replicas | awk -v c="$1" '$1 == c' | wc -l; }
no_replicas_of() { [[ $(replicas_of "$1") -eq 0 ]]; }
no_replicas_at_all() { [[ -z "$(all_replicas)" ]]; }
