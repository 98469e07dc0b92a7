#!/usr/bin/env bash
# The real keel-namenode with fake datanodes (tests/tools/nnprobe.c) over
# the real RPC: refused configurations, registration across failure
# domains, every namespace operation and its errors, chunk allocation in
# distinct domains, shrinking and deleting files down to the delete
# commands the datanodes execute, pipeline recovery and the resync of the
# dropped replica, a silent datanode declared dead (and back, after
# registering again), the spread restored once its domain returns, a
# datanode of another cluster refused, and a clean shutdown.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/nn_lib.sh"

# ---------------------------------------------------------- configuration
out=$("$KEEL_BIN/keel-namenode" --meta "$T/nothing" --listen 127.0.0.1:0 2>&1) &&
    fail "started on an unformatted directory"
[[ "$out" == *"--format"* ]] || fail "unclear message for an unformatted directory: $out"
mkdir -p "$T/foreign" && echo "not lmdb" >"$T/foreign/data.mdb"
out=$("$KEEL_BIN/keel-namenode" --meta "$T/foreign" --listen 127.0.0.1:0 2>&1) &&
    fail "started on a foreign directory"
[[ $(wc -l <<<"$out") -eq 1 ]] || fail "more than one line for a foreign directory: $out"

nn_format --chunk-size 1M --replication 3
"$KEEL_BIN/keel-namenode" --meta "$META" --format >>"$T/nn.log" 2>&1 &&
    fail "formatted twice"
out=$("$KEEL_BIN/keel-namenode" --meta "$META" --min-replicas 4 --listen 127.0.0.1:0 2>&1) &&
    fail "accepted --min-replicas above the replication"
[[ "$out" == *"min-replicas"* ]] || fail "unclear message: $out"
out=$("$KEEL_BIN/keel-namenode" --meta "$META" --replication-streams 0 --listen 127.0.0.1:0 2>&1) &&
    fail "accepted --replication-streams 0"
[[ "$out" == *"replication-streams"* && $(wc -l <<<"$out") -eq 1 ]] || fail "unclear message: $out"

nn_start --dead-timeout 2s --heartbeat-interval 200ms --lease-timeout 3s --safe-mode-timeout 5s
out=$("$KEEL_BIN/keel-namenode" --meta "$META" --listen 127.0.0.1:0 2>&1) &&
    fail "a second namenode started on the same directory"
[[ "$out" == *"in use"* ]] || fail "unclear message for a busy directory: $out"

# ----------------------------------------------------------- registration
dn_start 1 d1
dn_start 2 d2
dn_start 3 d3
dn_start 4 d1
wait_for 20 "4 live datanodes" has_alive 4
grep -q "safe_mode=0" <<<"$(op status)" || fail "safe mode on with no chunks"

# ------------------------------------------------------------- namespace
op mkdir /vm >/dev/null
out=$(op create /vm/a.img size=10M)
[[ "$out" == *"created=1"* && "$out" == *"size=10485760"* ]] || fail "create: $out"
expect_err EEXIST create /vm/a.img excl
out=$(op create /vm/a.img)
[[ "$out" == *"created=0"* ]] || fail "open of an existing file: $out"
expect_err EINVAL mkdir /vm/../x
expect_err EINVAL mkdir relative
expect_err ENAMETOOLONG mkdir "/$(printf 'n%.0s' {1..256})"
op mkdir "/$(printf 'n%.0s' {1..255})" >/dev/null || fail "a 255-byte name was refused"
expect_err ENOENT mkdir /nope/x
expect_err ENOTDIR create /vm/a.img/x
out=$(op ln /vm/a.img /vm/b.img)
[[ "$out" == *"nlink=2"* ]] || fail "link: $out"
expect_err EPERM ln /vm /vm2
op mv /vm/b.img /c.img >/dev/null
expect_err ENOENT stat /vm/b.img
[[ $(op stat /c.img) == *"nlink=2"* ]] || fail "renamed link lost its count"
op symlink /vm/a.img /s >/dev/null
[[ $(op readlink /s) == "/vm/a.img" ]] || fail "readlink"
expect_err EINVAL readlink /c.img
expect_err ENOTEMPTY rmdir /vm
expect_err EISDIR rm /vm
expect_err EBUSY rmdir /
op mkdir /d2 >/dev/null
op mv /vm /d2/vm >/dev/null
expect_err EINVAL mv /d2 /d2/vm/inside
op mv /d2/vm /vm >/dev/null
op create /vm/other >/dev/null
expect_err EEXIST mv /vm/other /c.img noreplace
op chmod /c.img 600 >/dev/null
[[ $(op stat /vm/a.img) == *"mode=100600"* ]] || fail "chmod through a hard link"

op mkdir /many >/dev/null
for i in $(seq -w 1 25); do op create "/many/f$i" >/dev/null; done
listing=$(op ls /many 7)
[[ $(wc -l <<<"$listing") -eq 25 ]] || fail "paged listing returned $(wc -l <<<"$listing") names"
[[ "$listing" == "$(sort <<<"$listing")" ]] || fail "listing out of order"
[[ $(op ls / | tr '\n' ' ') == "c.img d2 many n"*" s vm " ]] || fail "root listing: $(op ls /)"

# ---------------------------------------------------------------- chunks
out=$(op chunks /vm/a.img 0 3M write)
[[ $(grep -c '^chunk ' <<<"$out") -eq 3 ]] || fail "3 chunks expected: $out"
while read -r _ _ id ver reps doms _; do
    [[ "$ver" == v1 ]] || fail "new chunk at $ver"
    reps=${reps#replicas=}
    doms=${doms#domains=}
    [[ $(tr ',' '\n' <<<"$reps" | wc -l) -eq 3 ]] || fail "chunk $id has replicas $reps"
    [[ $(tr ',' '\n' <<<"$doms" | sort -u | wc -l) -eq 3 ]] || fail "chunk $id domains $doms"
    [[ $(replicas_of "$id") -eq 3 ]] || fail "chunk $id not created on 3 datanodes"
done < <(grep '^chunk ' <<<"$out")
chunk1=$(awk '$1 == "chunk" && $2 == 1 { print $3 }' <<<"$out")
chunk2=$(awk '$1 == "chunk" && $2 == 2 { print $3 }' <<<"$out")
# Reading allocates nothing.
out=$(op chunks /vm/a.img 0 10M)
[[ $(grep -c '^chunk ' <<<"$out") -eq 3 ]] || fail "read listing allocated: $out"
expect_err EINVAL chunks /vm/a.img 0 10G
expect_err EISDIR chunks /vm 0 1M

# Shrink to 1.5 chunks: chunk 2 goes, chunk 1 is cut at a new version.
op truncate /vm/a.img 1536K >/dev/null
wait_for 20 "chunk $chunk2 deleted at the datanodes" no_replicas_of "$chunk2"
[[ $(all_replicas | awk -v c="$chunk1" '$1 == c && $2 >= 2' | wc -l) -eq 3 ]] ||
    fail "chunk $chunk1 not trimmed to a new version: $(all_replicas)"
grep -q "trim $chunk1 to 524288" "$T"/dn*.log || fail "no trim to 512 KiB"
out=$(op chunks /vm/a.img 0 3M)
[[ $(grep -c '^chunk ' <<<"$out") -eq 2 ]] || fail "after the shrink: $out"

# A failed write pipeline: the failed replica is dropped, the survivors get
# a new version at the datanodes before the reply; repair then resyncs the
# dropped one (a delta copy to it: it holds an older version). A recovery
# naming every current replica, or for another version, changes nothing.
op create /rc >/dev/null
out=$(op --client-id 77 chunks /rc 0 1M write)
read -r _ _ rcid rcver rcreps _ < <(grep '^chunk ' <<<"$out")
rcreps=${rcreps#replicas=}
failed=${rcreps%%,*}
out=$(op --client-id 77 recover /rc "$rcid" "${rcver#v}" "$failed")
[[ "$out" == "chunk 0 $rcid v2 "* ]] || fail "recovery: $out"
awk '{ print $5 }' <<<"$out" | sed 's/replicas=//' | tr ',' '\n' | grep -qx "$failed" &&
    fail "the failed replica is still listed: $out"
[[ $(all_replicas | awk -v c="$rcid" '$1 == c && $2 >= 2' | wc -l) -eq 2 ]] ||
    fail "survivors not moved to a new version: $(all_replicas)"
[[ $(all_replicas | awk -v c="$rcid" '$1 == c && $2 == 1' | wc -l) -eq 1 ]] ||
    fail "the failed replica changed: $(all_replicas)"
resynced() { grep -q "copying chunk $rcid v[0-9]* from datanode [0-9]* to $failed (delta" "$T/nn.log"; }
wait_for 20 "a delta resync of the failed replica" resynced
repair_idle() { op status | grep -q "repl_queue=0 repl_running=0"; }
wait_for 20 "repair to settle" repair_idle
out=$(op --client-id 77 chunks /rc 0 1M detail | grep '^chunk ')
read -r _ _ _ curver currep _ <<<"$out"
[[ $(tr ',' '\n' <<<"${currep#replicas=}" | wc -l) -eq 3 ]] || fail "not resynced: $out"
grep -q "stale=0 corrupt=0 misplaced=0 replication=3" <<<"$out" || fail "detail after resync: $out"
rest=$(tr ',' ' ' <<<"${currep#replicas=}")
# shellcheck disable=SC2086
expect_err EIO --client-id 77 recover /rc "$rcid" "${curver#v}" $rest
[[ $(op chunks /rc 0 1M | awk '$1 == "chunk" { print $4 }') == "$curver" ]] ||
    fail "a refused recovery changed the version"
expect_err ESTALE --client-id 77 recover /rc "$rcid" 1 "$failed"
expect_err ESTALE --client-id 77 recover /rc "$rcid" 99 "$failed"
expect_err ENOENT --client-id 77 recover /rc ffffffff 1
op rm /rc >/dev/null

# The last name goes: every replica is deleted.
op rm /c.img >/dev/null
[[ $(replicas_of "$chunk1") -eq 3 ]] || fail "unlinking one of two names deleted data"
op rm /vm/a.img >/dev/null
wait_for 20 "every replica deleted" no_replicas_at_all
out=$(op statfs)
[[ "$out" == *"live_nodes=4"* && "$out" == *"chunk_size=1048576"* ]] || fail "statfs: $out"

# ------------------------------------------------------------ lazy sizes
# A growing size is visible to everyone at once (durable or not), never
# shrinks by an extend, and a truncate after it wins.
op create /grow >/dev/null
[[ $(op --client-id 9 extend /grow 5M) == "size=5242880" ]] || fail "extend"
[[ $(op stat /grow) == *" size=5242880 "* ]] || fail "a lazy size not visible: $(op stat /grow)"
[[ $(op --client-id 9 extend /grow 3M) == "size=5242880" ]] || fail "an extend shrank the file"
[[ $(op --client-id 9 extend /grow 7M durable) == "size=7340032" ]] || fail "durable extend"
[[ $(op --client-id 9 extend /grow 8M) == "size=8388608" ]] || fail "extend after durable"
out=$(op --client-id 9 truncate /grow 1M)
[[ "$out" == *" size=1048576 "* ]] || fail "truncate after a lazy extend: $out"
sleep 0.2 # any lazy commit of the older size has landed by now
[[ $(op stat /grow) == *" size=1048576 "* ]] || fail "an older size came back: $(op stat /grow)"
op rm /grow >/dev/null

# ------------------------------------------------------- a silent datanode
victim=$(dn_id 2)
kill -STOP "${DN_PID[2]}"
t0=$SECONDS
wait_for 20 "datanode $victim declared dead" node_is "$victim" dead
((SECONDS - t0 >= 1)) || fail "declared dead too early"
out=$(op status)
grep -q "^node $victim dead" <<<"$out" || fail "status: $out"
# New chunks avoid it; with d2 gone, two domains for three replicas is the
# best spread there is: not misplaced.
op create /after >/dev/null
out=$(op chunks /after 0 1M write detail)
placed=$(grep '^chunk ' <<<"$out" | awk '{ print $5 }' | sed 's/replicas=//')
[[ -n "$placed" ]] || fail "no chunk allocated without the dead node: $out"
tr ',' '\n' <<<"$placed" | grep -qx "$victim" && fail "placed on a dead node: $out"
grep -q "misplaced=0" <<<"$out" || fail "two live domains for three replicas, misplaced: $out"
out=$(op status)
grep -q "misplaced=0" <<<"$out" || fail "status counts a chunk misplaced: $out"
kill -CONT "${DN_PID[2]}"
wait_for 20 "datanode $victim alive again" node_is "$victim" alive
grep -q "datanode $victim .* is back; it must register again" "$T/nn.log" ||
    fail "a dead datanode came back without registering again"
# With d2 back, the chunk's spread can be better: a copy to d2, then the
# extra replica in the shared domain goes.
spread() {
    local l
    l=$(op chunks /after 0 1M detail | grep '^chunk ')
    [[ "$l" == *"misplaced=0"* ]] &&
        [[ $(awk '{ print $6 }' <<<"$l" | sed 's/domains=//' | tr ',' '\n' | sort -u | wc -l) -eq 3 ]]
}
wait_for 30 "/after spread over three domains" spread
grep -q "is misplaced: one copy to a new domain" "$T/nn.log" || fail "no copy for the spread"

# ----------------------------------------------- a datanode of another cluster
rc=0
"$NNP" dn --namenode "$NN" --state "$T/alien.state" --cluster-id 00000000-dead-beef \
    >>"$T/alien.log" 2>&1 || rc=$?
[[ $rc -eq 3 ]] || fail "a datanode of another cluster was not refused (rc $rc)"
grep -q "cluster id mismatch" "$T/nn.log" "$T/alien.log" || fail "no mismatch message"
[[ $(alive_nodes) -eq 4 ]] || fail "the alien datanode was counted"

# ------------------------------------------------------------- shutdown
for i in 1 2 3 4; do dn_stop "$i"; done
nn_stop
pass
