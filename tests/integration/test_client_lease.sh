#!/usr/bin/env bash
# Promise 5 through libkeel: -EBUSY while the holder writes, handover when it
# is idle, and the old holder's writes fenced off at the datanodes.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --namenode-args "--lease-timeout 5s"

# Creating a file takes no lease: the client must not renew one before its
# first write is granted. (It once did: inside the namenode's restart window
# the renewal was taken for a holder of the previous run, which kept the
# file "being written" long after the close; outside it, the lease was lost.)
# The input arrives after more than one renewal period (5 s / 3).
random_file "$T/n" 65536 1
{ sleep 2.5; cat "$T/n"; } | keel put - /new 2>"$T/put.err" || fail "put: $(cat "$T/put.err")"
grep -q "lost the write lease" "$T/put.err" && fail "the creator renewed a lease it had not: $(cat "$T/put.err")"
grep -q "keeps inode .* across the restart" "$CLUSTER/namenode.log" &&
    fail "a lease the creator never had was kept across the restart"
keel get /new "$T/n.back"
cmp "$T/n" "$T/n.back" || fail "/new reads back wrong"

# A size change by path (resizing an image) takes the lease for itself
# only: the next writer does not wait for it to expire.
keel truncate /new 8M
random_file "$T/m" 65536 2
t0=$(date +%s%N)
keel put "$T/m" /new
ms=$((($(date +%s%N) - t0) / 1000000))
log "a writer right after a truncate by another client took $ms ms"
((ms < 3500)) || fail "the writer waited $ms ms: the truncate's lease was left to expire (5 s)"
keel get /new "$T/m.back"
cmp "$T/m" "$T/m.back" || fail "/new reads back wrong after the truncate"
"$KEEL_BIN/keel_writer" lease --namenode "$NN" --path /leased || fail "lease semantics"
pass
