#!/usr/bin/env bash
# fio with verification on a keel-fuse mount: random 4 KiB writes from 4
# jobs then the verify pass, sequential 1 MiB writes with fsync on close, and
# direct writes (one file per job, and queue depth 16 on one file).
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M
M="$T/mnt"
mount_keel "$M"

fio --name=rand --directory="$M" --rw=randwrite --bs=4k --size=8M --numjobs=4 \
    --ioengine=psync --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting \
    >"$T/fio-rand.txt" 2>&1 || { cat "$T/fio-rand.txt"; fail "fio random writes with verify"; }
grep -q "err= 0" "$T/fio-rand.txt" || { cat "$T/fio-rand.txt"; fail "fio reported errors"; }

fio --name=seq --directory="$M" --rw=write --bs=1M --size=48M --ioengine=psync \
    --fsync_on_close=1 --verify=crc32c --verify_fatal=1 --do_verify=1 \
    >"$T/fio-seq.txt" 2>&1 || { cat "$T/fio-seq.txt"; fail "fio sequential writes"; }
grep -q "err= 0" "$T/fio-seq.txt" || { cat "$T/fio-seq.txt"; fail "fio reported errors"; }

# The same with O_DIRECT (QEMU cache=none).
fio --name=direct --directory="$M" --rw=randwrite --bs=4k --size=4M --numjobs=2 --direct=1 \
    --ioengine=psync --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting \
    >"$T/fio-direct.txt" 2>&1 || { cat "$T/fio-direct.txt"; fail "fio direct"; }
# Direct writes at queue depth 16 to one file (a VM's image): keel-fuse lets
# the kernel send them in parallel, and libkeel orders them.
fio --name=qd --filename="$M/qd" --rw=randwrite --bs=4k --size=8M --direct=1 \
    --ioengine=libaio --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 \
    >"$T/fio-qd.txt" 2>&1 || { cat "$T/fio-qd.txt"; fail "fio direct at queue depth 16"; }
grep -q "err= 0" "$T/fio-qd.txt" || { cat "$T/fio-qd.txt"; fail "fio reported errors"; }

unmount_keel "$M"
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas differ"; }
pass
