#!/usr/bin/env bash
# Real hypervisor tools on a keel-fuse mount (1 MiB chunks, so images span
# many chunks): qemu-img create/convert/compare/check, qemu-io with
# cache=none across chunk boundaries (including aio_write), data that
# survives a fresh process, and QEMU's own image locking.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M
M="$T/mnt"
mount_keel "$M"

qemu-img create -q -f raw "$M/raw.img" 64M
qemu-img create -q -f qcow2 "$M/disk.qcow2" 256M
qemu-img info "$M/disk.qcow2" | grep -q "virtual size: 256 MiB" || fail "qcow2 info"
[[ $(stat -c %s "$M/raw.img") -eq $((64 << 20)) ]] || fail "raw size"

# convert a local image in and out, compare, check.
qemu-img create -q -f qcow2 "$T/local.qcow2" 64M
qemu-io -f qcow2 -c "write -q -P 0xab 0 8M" -c "write -q -P 0xcd 20M 3M" -c "write -q -P 0x5a 63M 1M" \
    "$T/local.qcow2" >/dev/null
qemu-img convert -f qcow2 -O qcow2 "$T/local.qcow2" "$M/conv.qcow2"
qemu-img convert -f qcow2 -O raw "$M/conv.qcow2" "$T/back.raw"
qemu-img compare -q "$T/local.qcow2" "$M/conv.qcow2" || fail "compare local vs mounted"
qemu-img compare -q -f qcow2 -F raw "$T/local.qcow2" "$T/back.raw" || fail "compare after convert back"
qemu-img check "$M/conv.qcow2" >"$T/check.txt" 2>&1 || { cat "$T/check.txt"; fail "qemu-img check"; }

# qemu-io, cache=none: patterns at many offsets, across chunk boundaries.
cmds=()
checks=()
i=0
for off in 0 $((1024 * 1024 - 4096)) $((3 * 1024 * 1024 - 512)) $((7 * 1024 * 1024 + 4096)) \
    $((17 * 1024 * 1024 - 65536)) $((40 * 1024 * 1024 - 8192)); do
    p=$((0x10 + i))
    cmds+=(-c "write -q -P $p $off 128k")
    checks+=(-c "read -q -P $p $off 128k")
    i=$((i + 1))
done
cmds+=(-c "aio_write -q -P 0x77 $((5 * 1024 * 1024 - 2048)) 64k" -c "aio_flush")
checks+=(-c "read -q -P 0x77 $((5 * 1024 * 1024 - 2048)) 64k")
qemu-io -n -f raw "${cmds[@]}" "${checks[@]}" "$M/raw.img" >"$T/qio1.txt" 2>&1 ||
    { cat "$T/qio1.txt"; fail "qemu-io write/read"; }
grep -qi "pattern verification failed\|error" "$T/qio1.txt" && { cat "$T/qio1.txt"; fail "qemu-io"; }
# A fresh process, reading past any cache: the same patterns.
qemu-io -n -f raw "${checks[@]}" "$M/raw.img" >"$T/qio2.txt" 2>&1 || { cat "$T/qio2.txt"; fail "read back"; }
grep -qi "pattern verification failed\|error" "$T/qio2.txt" && { cat "$T/qio2.txt"; fail "read back"; }
# The same through the qcow2 layer.
qemu-io -n -f qcow2 -c "write -q -P 0x42 1020k 8k" -c "aio_write -q -P 0x43 100M 2M" -c "aio_flush" \
    "$M/disk.qcow2" >/dev/null || fail "qcow2 write"
qemu-io -n -f qcow2 -c "read -q -P 0x42 1020k 8k" -c "read -q -P 0x43 100M 2M" -c "read -q -P 0 0 512k" \
    "$M/disk.qcow2" >"$T/qio3.txt" 2>&1 || { cat "$T/qio3.txt"; fail "qcow2 read back"; }
grep -qi "pattern verification failed" "$T/qio3.txt" && { cat "$T/qio3.txt"; fail "qcow2 patterns"; }
qemu-img check -q "$M/disk.qcow2" || fail "qemu-img check after qemu-io"

# QEMU's image locking works on the mount: QEMU takes its OFD lock bytes on
# the image, and another process asking for a conflicting lock on them is
# refused while QEMU holds the image, granted once it let go (as on ext4;
# QEMU's own tools share write access, so two of them never conflict).
cat >"$T/ofd.py" <<'PY'
import errno, fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
lock = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, int(sys.argv[2]), 1, 0)
try:
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
    print("granted")
except OSError as e:
    print("refused" if e.errno in (errno.EAGAIN, errno.EACCES) else "error %d" % e.errno)
PY
mkfifo "$T/cmds"
qemu-io -f raw "$M/raw.img" <"$T/cmds" >"$T/holder.txt" 2>&1 &
holder=$!
track_pid $holder
exec 7>"$T/cmds"
wait_for 10 "QEMU to lock the image" grep -q "OFDLCK.*:$(stat -c %i "$M/raw.img") 100 " /proc/locks
[[ "$(python3 "$T/ofd.py" "$M/raw.img" 101)" == refused ]] || fail "a lock conflicting with QEMU's was granted"
echo quit >&7
exec 7>&-
wait $holder || true
[[ "$(python3 "$T/ofd.py" "$M/raw.img" 101)" == granted ]] || fail "QEMU's lock outlived it"

unmount_keel "$M"
keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "replicas differ"; }
pass
