#!/usr/bin/env bash
# A cluster whose datanodes share a 40 MiB tmpfs, written through the mount
# until it is full. The writer is told ENOSPC (what QEMU's werror=enospc
# pauses a guest on), not EIO: a direct write fails with it, and a
# buffered one at the fsync. What was written before still reads back, and
# no process dies. Once a file is deleted, the write that failed goes
# through when tried again (as QEMU does when the guest is resumed).
source "$KEEL_SRC/tests/lib.sh"

tmpfs_or_skip "$CLUSTER" 40m
# The cluster lives on the tmpfs: stop it and keep its logs (for the
# sanitizer check) before the tmpfs goes.
full_down() {
    set +e
    for m in "${MOUNTS[@]}"; do fusermount3 -u "$m" 2>/dev/null; done
    MOUNTS=()
    "$KEEL_SRC/scripts/keel-local" down --dir "$CLUSTER" >/dev/null 2>&1
    for f in "$CLUSTER"/*.log; do cp "$f" "$T/cluster-$(basename "$f")"; done
    umount "$CLUSTER" || umount -l "$CLUSTER"
}
trap 'rc=$?; full_down; (exit $rc); cleanup' EXIT

cluster_up --datanodes 3 --domains 3 --chunk-size 1M --datanode-args "--wal-size 0"
M="$T/mnt"
mount_keel "$M"

random_file "$T/keep" $((4 << 20)) 7
cp "$T/keep" "$M/keep"
cp "$T/keep" "$M/spare"
sync "$M/keep" "$M/spare"

# 64 MiB three times over does not fit in 40 MiB.
if dd if=/dev/urandom of="$M/direct" bs=1M count=64 oflag=direct 2>"$T/dd-direct.err"; then
    fail "a direct write of 64 MiB fitted in 40 MiB"
fi
log "direct: $(tail -n 1 "$T/dd-direct.err")"
grep -q "No space left on device" "$T/dd-direct.err" || fail "direct: $(cat "$T/dd-direct.err")"

if dd if=/dev/urandom of="$M/buffered" bs=1M count=64 conv=fsync 2>"$T/dd-buffered.err"; then
    fail "a buffered write of 64 MiB fitted in 40 MiB"
fi
log "buffered: $(grep -v records "$T/dd-buffered.err" | tail -n 1)"
grep -q "No space left on device" "$T/dd-buffered.err" || fail "buffered: $(cat "$T/dd-buffered.err")"

cmp "$T/keep" <(dd if="$M/keep" bs=1M iflag=direct 2>/dev/null) ||
    fail "the file written before the disk filled reads back changed"
for p in "$CLUSTER"/namenode.pid "$CLUSTER"/dn*.pid; do
    kill -0 "$(cat "$p")" 2>/dev/null || fail "$(basename "$p" .pid) died"
done
mountpoint -q "$M" || fail "keel-fuse died"

# Room again: the direct write that failed goes through when retried.
rm "$M/spare" "$M/buffered"
room() { (($(df --output=avail -k "$CLUSTER" | tail -n 1) >= 8192)); }
wait_for 30 "the deleted files' replicas to go" room
mib=$(($(sed -n 's/^\([0-9]*\) bytes.*/\1/p' "$T/dd-direct.err") >> 20)) # the MiB refused
random_file "$T/retry" $((1 << 20)) 8
dd if="$T/retry" of="$M/direct" bs=1M seek=$mib count=1 oflag=direct conv=notrunc \
    2>"$T/dd-retry.err" || fail "the retried write at $mib MiB: $(cat "$T/dd-retry.err")"
cmp "$T/retry" <(dd if="$M/direct" bs=1M skip=$mib count=1 iflag=direct 2>/dev/null) ||
    fail "the retried write reads back changed"
grep -q "takes writes again" "$CLUSTER"/dn*.log || fail "no datanode took writes again"
pass
