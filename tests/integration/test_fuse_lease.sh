#!/usr/bin/env bash
# Promise 5 across two mounts (two hypervisor hosts): a second mount writing
# an image the first is actively writing gets EBUSY; once the first stops
# writing, the second takes over (live migration), also right after the
# first one's last write, and sees the first one's data, also when the
# first wrote through the page cache (written behind).
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M
A="$T/mnta"
B="$T/mntb"
mount_keel "$A"
mount_keel "$B"

qemu-img create -q -f raw "$A/vm.img" 16M
# Host A runs the VM: one process keeps the image open and writes to it.
mkfifo "$T/a.cmds"
qemu-io -n -f raw "$A/vm.img" <"$T/a.cmds" >"$T/a.out" 2>&1 &
vm=$!
track_pid $vm
exec 7>"$T/a.cmds"
(
    for ((i = 0; i < 100; i++)); do
        echo "write -q -P 0x11 $((i * 4096)) 4k"
        sleep 0.05
    done
) >&7 &
busy=$!
sleep 1
if dd if=/dev/urandom of="$B/vm.img" bs=4k count=1 conv=notrunc oflag=direct status=none 2>"$T/err"; then
    fail "host B could write while host A was writing"
fi
grep -q "busy" "$T/err" || fail "expected EBUSY, got: $(cat "$T/err")"
wait $busy
# A stops writing but keeps the image open (the VM migrated away and is
# paused), and B writes at once: the namenode asks A again until A has been
# idle long enough to hand over, and B's write waits for that.
printf 'migrated' >"$T/mark"
t0=$(date +%s%N)
dd if="$T/mark" of="$B/vm.img" bs=8 count=1 seek=132072 conv=notrunc oflag=direct status=none ||
    fail "host B could not take over the lease right after A's last write"
ms=$((($(date +%s%N) - t0) / 1000000))
echo "handover right after the last write took $ms ms"
# A (cache=none) sees B's write, and its own earlier ones.
echo "read -q -P 0x11 0 240k" >&7
echo "read -v 1056576 8" >&7
echo quit >&7
exec 7>&-
wait $vm || true
grep -q "migrated" "$T/a.out" || fail "host A does not see host B's write: $(cat "$T/a.out")"
grep -qi "verification failed\|error" "$T/a.out" && fail "host A: $(cat "$T/a.out")"

# Buffered writes are written behind, but once close(2) returns another
# mount reads them (close-to-open), and a buffered writer that went idle
# (QEMU cache=writeback) hands over without losing any of its writes.
head -c $((5 << 20)) /dev/urandom >"$T/data"
dd if="$T/data" of="$A/cto" bs=64k status=none || fail "buffered write on A"
cmp "$B/cto" "$T/data" || fail "B does not read what A wrote and closed"
qemu-img create -q -f raw "$A/wb.img" 8M
# The VM: buffered writes, then the image stays open, idle.
python3 - "$A/wb.img" "$T/written" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
for i in range(32):
    os.pwrite(fd, b"\x22" * 65536, i * 65536)
open(sys.argv[2], "w").close()
time.sleep(30)
PY
vm=$!
track_pid $vm
for ((i = 0; i < 100; i++)); do [[ -e "$T/written" ]] && break; sleep 0.1; done
[[ -e "$T/written" ]] || fail "the buffered writer did not finish"
sleep 2
dd if="$T/mark" of="$B/wb.img" bs=8 count=1 seek=$((4 << 17)) conv=notrunc oflag=direct status=none ||
    fail "B could not take over from an idle buffered writer"
qemu-io -n -f raw -c "read -q -P 0x22 0 2M" -c "read -v $((4 << 20)) 8" "$B/wb.img" >"$T/b.out" 2>&1 ||
    fail "B reads: $(cat "$T/b.out")"
grep -q "migrated" "$T/b.out" || fail "B does not see its own write: $(cat "$T/b.out")"
grep -qi "verification failed\|error" "$T/b.out" && fail "B misses A's buffered writes: $(cat "$T/b.out")"
kill $vm
wait $vm 2>/dev/null || true
unmount_keel "$A"
unmount_keel "$B"
pass
