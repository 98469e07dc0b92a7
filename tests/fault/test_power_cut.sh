#!/usr/bin/env bash
# Promise 2 across a power cut. Small writes acknowledged by a flush are
# durable in each datanode's log, not in the replicas' files. Every datanode
# is killed, the pages of those writes are put back to what the disk held
# before them (as a power cut would leave them), and the datanodes start
# under another boot id: the log is replayed, the file reads back whole and
# the replicas agree.
source "$KEEL_SRC/tests/lib.sh"

# A boot id that cannot be read stops the start, with the reason.
mkdir "$T/lone"
if "$KEEL_BIN/keel-datanode" --data "$T/lone" --namenode 127.0.0.1:1 \
    --boot-id-file "$T/no-such-file" >"$T/lone.log" 2>&1; then
    fail "a datanode started without its boot id"
fi
grep -q "cannot read a boot id from $T/no-such-file" "$T/lone.log" || fail "no reason given: $(cat "$T/lone.log")"

IO=2048 EVERY=5 SIZE=$((4 * 1024 * 1024)) CHUNK=$((1024 * 1024))
echo "boot-before-$$" >"$T/boot_id"
cluster_up --datanodes 3 --chunk-size 1M --namenode-args "$FAST_NN" \
    --datanode-args "$FAST_DN --boot-id-file $T/boot_id"
random_file "$T/base" $SIZE 11

writer powercut --path /v --base "$T/base" --io $IO --every $EVERY >"$T/powercut.log" 2>&1 &
pw=$!
track_pid $pw
wait_for 60 "the small writes to be flushed" grep -q ready "$T/powercut.log"

# Frozen first, so that no replica settles and the writer's next write
# cannot fail over (a recovery would move the chunks' versions on).
log "killing every datanode while the replicas are dirty"
for i in 1 2 3; do local_cluster stop-datanode $i; done
kill -KILL $pw 2>/dev/null || true
wait $pw 2>/dev/null || true
for i in 1 2 3; do local_cluster kill-datanode $i; done
keel --json stat /v >"$T/stat.json"

# The power cut: every 4 KiB page a small write touched goes back to the
# base, in every replica. Only pages the writes changed count as lost.
lost=$(python3 - "$T/base" "$T/stat.json" "$CLUSTER" $IO $EVERY $CHUNK <<'PY'
import json, sys
base_path, stat_path, cluster, io, every, chunk = sys.argv[1:3] + [sys.argv[3]] + [int(a) for a in sys.argv[4:]]
base = open(base_path, "rb").read()
chunks = json.load(open(stat_path))["chunks"]
lost = 0
for c in chunks:
    i, cid = c["index"], c["chunk_id"]
    for dn in (1, 2, 3):
        path = "%s/dn%d/chunks/%02x/%016x.data" % (cluster, dn, cid & 0xFF, cid)
        with open(path, "r+b") as f:
            for off in range(io, len(base) - io + 1, every * io):
                if off // chunk != i:
                    continue
                first = off // 4096 * 4096
                end = (off + io + 4095) // 4096 * 4096
                f.seek(first - i * chunk)
                if f.read(end - first) != base[first:end]:
                    lost += 1
                f.seek(first - i * chunk)
                f.write(base[first:end])
print(lost)
PY
)
[[ $lost -gt 0 ]] || fail "no page held a small write: nothing to lose"
log "$lost pages put back to what the disk held before the small writes"

echo "boot-after-$$" >"$T/boot_id"
for i in 1 2 3; do local_cluster start-datanode $i; done
for i in 1 2 3; do
    grep -q "replayed [1-9][0-9]* logged writes" "$CLUSTER/dn$i.log" ||
        fail "datanode $i replayed nothing"
done

python3 - "$T/base" "$T/want" $IO $EVERY <<'PY'
import sys
base, want, io, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = bytearray(open(base, "rb").read())
for off in range(io, len(data) - io + 1, every * io):
    data[off:off + io] = bytes(b ^ 0xFF for b in data[off:off + io])
open(want, "wb").write(data)
PY
keel get /v "$T/got"
cmp "$T/want" "$T/got" || fail "acknowledged small writes lost in the power cut"
keel fsck --verify >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "replicas differ after the power cut"; }
pass
