#!/usr/bin/env bash
# The namenode's metadata directory fills up (a 4 MiB tmpfs, all but 8 KiB
# taken by a filler file): a change that cannot be committed fails with ENOSPC
# and changes nothing, reads still work, the namenode keeps running, and
# once there is room again changes commit and survive a restart.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/nn_lib.sh"

FULL="$T/full"
tmpfs_or_skip "$FULL" 4m
# Stop the namenode before the tmpfs goes (lib.sh's cleanup would only
# find it afterwards).
full_down() {
    set +e
    if [[ -n "$NN_PID" ]] && kill -0 "$NN_PID" 2>/dev/null; then
        kill -TERM "$NN_PID"
        wait "$NN_PID"
    fi
    umount "$FULL" || umount -l "$FULL"
}
trap 'rc=$?; full_down; (exit $rc); cleanup' EXIT

META="$FULL/meta"
nn_format --chunk-size 1M
nn_start
op mkdir /before >/dev/null || fail "mkdir before the disk filled"

# All but 8 KiB: a commit then writes some of its pages and not the others
# (LMDB reports that short write as EIO).
avail=$(df --output=avail -k "$FULL" | tail -n 1)
dd if=/dev/zero of="$FULL/filler" bs=4k count=$((avail / 4 - 2)) 2>/dev/null ||
    fail "cannot fill the tmpfs"
# The first changes may still fit; a few more cannot.
for ((i = 0; i < 20; i++)); do
    out=$(op mkdir "/full$i") || break
done
[[ "$out" == "ERR ENOSPC"* ]] || fail "a mkdir on a full disk gave '$out', expected ENOSPC"
log "mkdir /full$i on a full disk: $out"
kill -0 "$NN_PID" || fail "the namenode died"
op stat /before >/dev/null || fail "a read on a full disk"
expect_err ENOENT stat "/full$i"

rm "$FULL/filler"
op mkdir /after >/dev/null || fail "mkdir once there is room again"
nn_stop
nn_start
op stat /before >/dev/null || fail "/before is gone after the restart"
op stat /after >/dev/null || fail "/after is gone after the restart"
expect_err ENOENT stat "/full$i"
pass
