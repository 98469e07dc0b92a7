#!/usr/bin/env bash
# Promise 5 across two mounts (two hypervisor hosts): a second mount writing
# an image the first is actively writing gets EBUSY; once the first is idle
# the second takes over (live migration), and sees the first one's data.
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
    for ((i = 0; i < 60; i++)); do
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
# paused): after the idle time, B's write takes the lease over.
printf 'migrated' >"$T/mark"
sleep 2
dd if="$T/mark" of="$B/vm.img" bs=8 count=1 seek=132072 conv=notrunc oflag=direct status=none ||
    fail "host B could not take over an idle lease"
# A (cache=none) sees B's write, and its own earlier ones.
echo "read -q -P 0x11 0 240k" >&7
echo "read -v 1056576 8" >&7
echo quit >&7
exec 7>&-
wait $vm || true
grep -q "migrated" "$T/a.out" || fail "host A does not see host B's write: $(cat "$T/a.out")"
grep -qi "verification failed\|error" "$T/a.out" && fail "host A: $(cat "$T/a.out")"
unmount_keel "$A"
unmount_keel "$B"
pass
