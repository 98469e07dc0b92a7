#!/usr/bin/env bash
# keel-fuse's two ways of serving the kernel: its own loop on libkeel's I/O
# thread (the default) and libfuse's single-threaded one (-s), here with
# polling off (--poll-us 0). Data written through each, buffered and
# O_DIRECT, reads back byte for byte through the other; each ends on
# SIGTERM within a few seconds and leaves no mount behind. Bad --poll-us
# values are refused, by keel-fuse and by keel-datanode.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --domains 3 --chunk-size 1M

for bad in 10001 -1 x 2K; do
    rc=0
    "$KEEL_BIN/keel-fuse" --namenode "$NN" --poll-us "$bad" "$T/nowhere" -f 2>"$T/bad.txt" || rc=$?
    [[ $rc -eq 2 ]] || fail "keel-fuse --poll-us $bad: exit $rc, expected 2"
    rc=0
    "$KEEL_BIN/keel-datanode" --data "$T/nodata" --namenode "$NN" --poll-us "$bad" \
        2>"$T/bad.txt" || rc=$?
    [[ $rc -eq 2 ]] || fail "keel-datanode --poll-us $bad: exit $rc, expected 2"
done
[[ ! -e "$T/nodata" ]] || fail "a refused keel-datanode touched its data directory"

A="$T/own" B="$T/single"
mount_keel "$A"
pid_a=$!
mount_keel "$B" -s --poll-us 0
pid_b=$!

head -c $((6 << 20)) /dev/urandom >"$T/one"
head -c $((5 << 20)) /dev/urandom >"$T/two"

# Buffered through the default loop, read through libfuse's.
dd if="$T/one" of="$A/one" bs=64k conv=fsync status=none
cmp "$T/one" "$B/one" || fail "a file written through the own loop reads back wrong through -s"
# O_DIRECT through libfuse's loop, read (O_DIRECT too) through the default one.
dd if="$T/two" of="$B/two" bs=1M oflag=direct conv=fsync status=none
dd if="$A/two" of="$T/two.back" bs=1M iflag=direct status=none
cmp "$T/two" "$T/two.back" || fail "a file written through -s reads back wrong through the own loop"
# And small overwrites in place, through each, seen by the other.
printf 'own-loop' | dd of="$A/two" bs=1 seek=4097 conv=notrunc,fsync status=none
printf 'libfuse!' | dd of="$B/one" bs=1 seek=123457 conv=notrunc,fsync status=none
[[ $(dd if="$B/two" bs=1 skip=4097 count=8 status=none) == own-loop ]] ||
    fail "an overwrite through the own loop is not seen through -s"
[[ $(dd if="$A/one" bs=1 skip=123457 count=8 status=none) == 'libfuse!' ]] ||
    fail "an overwrite through -s is not seen through the own loop"

for m in "$A:$pid_a" "$B:$pid_b"; do
    mnt=${m%%:*} pid=${m##*:}
    kill -TERM "$pid"
    wait_for 10 "keel-fuse on $mnt to exit on SIGTERM" bash -c "! kill -0 $pid"
    rc=0
    wait "$pid" || rc=$?
    [[ $rc -eq 0 ]] || fail "keel-fuse on $mnt exited with $rc on SIGTERM"
    ! mountpoint -q "$mnt" || fail "$mnt is still mounted after keel-fuse exited"
done
pass
