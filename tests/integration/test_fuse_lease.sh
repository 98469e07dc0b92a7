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
# Host A runs the VM: keeps writing.
(
    for ((i = 0; i < 400; i++)); do
        dd if=/dev/zero of="$A/vm.img" bs=4k count=1 seek=$((i % 100)) conv=notrunc oflag=direct status=none
        sleep 0.02
    done
) &
busy=$!
track_pid $busy
sleep 1
if dd if=/dev/urandom of="$B/vm.img" bs=4k count=1 conv=notrunc oflag=direct status=none 2>"$T/err"; then
    fail "host B could write while host A was writing"
fi
grep -q "busy" "$T/err" || fail "expected EBUSY, got: $(cat "$T/err")"
kill $busy
wait $busy 2>/dev/null || true
# A stops (the VM migrated): after the idle time, B takes the lease.
printf 'migrated' >"$T/mark"
sleep 2
dd if="$T/mark" of="$B/vm.img" bs=8 count=1 seek=1000 conv=notrunc oflag=direct status=none ||
    fail "host B could not take over an idle lease"
# A sees B's write (after A's attribute and page cache let go).
sleep 1.5
[[ "$(dd if="$A/vm.img" bs=8 skip=1000 count=1 iflag=direct status=none)" == migrated ]] ||
    fail "host A does not see host B's write"
unmount_keel "$A"
unmount_keel "$B"
pass
