#!/usr/bin/env bash
# The namenode's repair scheduling, with fake datanodes (nnprobe dn) that
# play copies (a copy "takes" --copy-ms, then its source reports it done),
# so that order and concurrency show in the namenode's log:
#   - chunks with one good replica are copied before chunks with two;
#   - no datanode ever sends or receives more than --replication-streams
#     copies at once;
#   - a copy that fails goes again from another source or to another target;
#   - a copy that times out goes again elsewhere (and a late success counts);
#   - nothing is copied until every datanode has reported after a restart.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/nn_lib.sh"

NNLOG="$T/nn.log"
nn_format --chunk-size 1M --replication 3
nn_start --dead-timeout 2s --heartbeat-interval 200ms --lease-timeout 2s --safe-mode-timeout 5s \
    --replication-streams 1 --replication-timeout 3s
for i in 1 2 3 4 5; do dn_start "$i" "d$i" --copy-ms 300; done
wait_for 20 "5 live datanodes" has_alive 5

# Replication 2 and 3: losing one node leaves one or two good replicas.
op create /two repl=2 >/dev/null
op create /three repl=3 >/dev/null
op chunks /two 0 24M write >/dev/null || fail "allocation of /two"
op chunks /three 0 24M write >/dev/null || fail "allocation of /three"
repair_idle() { op status | grep -q "under=0 missing=0 misplaced=0 stale=0 corrupt=0 repl_queue=0 repl_running=0"; }
# The allocating clients' leases lapse and their chunks are fenced: wait
# for that, so no version change is in flight when the test begins.
fenced() { [[ $(grep -c "lost inode .* (not renewed)" "$NNLOG") -ge 2 ]]; }
wait_for 20 "the allocations' leases to lapse" fenced
sleep 0.5
wait_for 20 "a healthy start" repair_idle

# ------------------------------------------------------ priority, streams
victim=$(dn_id 1)
ones=$(op chunks /two 0 24M | awk -v v="$victim" '$1 == "chunk" && ("," $5 ",") ~ ("=" v ",|," v ",") { n++ } END { print n + 0 }')
twos=$(op chunks /three 0 24M | awk -v v="$victim" '$1 == "chunk" && ("," $5 ",") ~ ("=" v ",|," v ",") { n++ } END { print n + 0 }')
log "datanode $victim holds $ones chunks of /two and $twos of /three"
((ones >= 4 && twos >= 4)) || fail "too few chunks on the victim for the test: $ones, $twos"
mark=$(wc -l <"$NNLOG")
dn_stop 1
wait_for 20 "datanode $victim declared dead" node_is "$victim" dead
wait_for 60 "repair of everything" repair_idle
tail -n +"$mark" "$NNLOG" >"$T/phase1.log"

# The classes in the order copies were planned.
classes=$(sed -n 's/.*repair: chunk [0-9a-f]* has \([0-9]*\) of [0-9]* good replicas.*/\1/p' "$T/phase1.log" | tr '\n' ' ')
log "classes in planning order: $classes"
n1=$(sed -n 's/.*repair: chunk \([0-9a-f]*\) has 1 of [0-9]* good replicas.*/\1/p' "$T/phase1.log" | sort -u | wc -l)
n2=$(sed -n 's/.*repair: chunk \([0-9a-f]*\) has 2 of [0-9]* good replicas.*/\1/p' "$T/phase1.log" | sort -u | wc -l)
((n1 == ones && n2 == twos)) || fail "repairs planned for $n1 + $n2 chunks, $ones + $twos lost a replica"
# Every one-replica chunk is planned before any two-replica one, although
# the streams of the one-replica chunks' nodes are often busy.
early=$(awk '{ for (i = 1; i <= NF; i++) if ($i == 1) last = i; for (i = 1; i <= last; i++) if ($i == 2) n++; print n + 0 }' <<<"$classes")
((early == 0)) || fail "$early two-replica chunks were planned before the last one-replica chunk: $classes"

# Per-node streams, replayed from the log: started and finished copies.
awk '
    /repair: copying chunk/ {
        for (i = 1; i <= NF; i++) { if ($i == "datanode") s = $(i + 1); if ($i == "to") t = $(i + 1) }
        out[s]++; inn[t]++
        if (out[s] > 1 || inn[t] > 1) { print "over the limit: " $0; bad = 1 }
    }
    /repair: chunk .* copied from datanode/ || /repair: copy of chunk .* (failed|timed out|lost)/ {
        for (i = 1; i <= NF; i++) { if ($i == "datanode") s = $(i + 1); if ($i == "to") t = $(i + 1) }
        sub(":", "", t); out[s]--; inn[t]--
    }
    END { exit bad }' "$T/phase1.log" || fail "a datanode went over one stream"
[[ $(grep -c "repair: copying chunk" "$T/phase1.log") -ge $((ones + twos)) ]] || fail "copies missing"

# ------------------------------------------------- failures go elsewhere
# Datanode 2's first copies fail at the source (EIO): a chunk whose copy
# failed the first time goes again to another target (and from another
# source when there is one), and the cluster still heals.
dn_start 1 d1 --copy-ms 100
dn_stop 2
dn_start 2 d2 --copy-ms 100 --copy-fail 5 --copy-fails 3
wait_for 20 "5 live datanodes again" has_alive 5
wait_for 60 "repair after the restarts" repair_idle
mark=$(wc -l <"$NNLOG")
dn_stop 3
wait_for 20 "datanode 3 declared dead" node_is "$(dn_id 3)" dead
wait_for 120 "repair with a failing source" repair_idle
tail -n +"$mark" "$NNLOG" >"$T/phase2.log"
src2=$(dn_id 2)
failed=$(grep -c "copy of chunk .* from datanode $src2 to .* failed" "$T/phase2.log" || true)
log "$failed copies from datanode $src2 failed"
while read -r c tgt; do
    [[ -n "$c" ]] || continue
    next=$(awk -v c="$c" -v s="$src2" -v t="$tgt" '
        $0 ~ ("copy of chunk " c " v[0-9]* from datanode " s " to " t " failed") { seen = 1; next }
        seen && $0 ~ ("copying chunk " c " ") { print; exit }' "$T/phase2.log")
    [[ -n "$next" ]] || fail "chunk $c was not copied again after its copy failed"
    # Avoided as source and as target separately: with five nodes there is
    # always another target.
    [[ "$next" == *" to $tgt"* ]] && fail "chunk $c retried to the same target: $next"
done < <(sed -n "s/.*copy of chunk \([0-9a-f]*\) v[0-9]* from datanode $src2 to \([0-9]*\) failed.*/\1 \2/p" \
    "$T/phase2.log" | awk '!seen[$1]++')

# ------------------------------------------------------------ timeouts
# Datanode 4 takes 8 s per copy, the timeout is 3 s: its copies go again
# elsewhere, their late successes count, and the cluster still heals.
dn_stop 2
dn_start 2 d2 --copy-ms 100
dn_stop 4
dn_start 4 d4 --copy-ms 8s
dn_start 3 d3 --copy-ms 100
wait_for 20 "5 live datanodes again" has_alive 5
wait_for 60 "repair after the restarts" repair_idle
mark=$(wc -l <"$NNLOG")
victim=$(dn_id 5)
dn_stop 5
wait_for 20 "datanode $victim declared dead" node_is "$victim" dead
wait_for 90 "repair with a slow datanode" repair_idle
tail -n +"$mark" "$NNLOG" >"$T/phase3.log"
if grep -q "copying chunk .* from datanode $(dn_id 4) to" "$T/phase3.log"; then
    grep -q "timed out; trying elsewhere" "$T/phase3.log" || fail "an 8 s copy did not time out"
fi

# ---------------------------------------------- no copies on a partial picture
# After a restart (safe mode ends at once here), datanode 1 reports while
# the others are not heard from yet: nothing may be copied on that picture.
for i in 1 2 3 4; do dn_stop "$i"; done
nn_stop
mark=$(wc -l <"$NNLOG")
nn_start --dead-timeout 6s --heartbeat-interval 200ms --lease-timeout 2s --safe-mode-timeout 5s \
    --safe-mode-threshold 0 --replication-streams 1
dn_start 1 d1 --copy-ms 100
wait_for 20 "datanode 1 back" has_alive 1
sleep 2
tail -n +"$mark" "$NNLOG" | grep -q "repair: copying" && fail "copies planned before the others reported"
for i in 2 3 4; do dn_start "$i" "d$i" --copy-ms 100; done
wait_for 20 "4 datanodes back" has_alive 4
for i in 1 2 3 4; do dn_stop "$i"; done
nn_stop
pass
