#!/usr/bin/env bash
# A datanode killed with SIGKILL while fio writes through the mount with
# verification: the job finishes without an I/O error and verifies.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 4 --domains 4 --chunk-size 1M
M="$T/mnt"
mount_keel "$M" --timeout 3s

fio --name=kill --directory="$M" --rw=randwrite --bs=4k --size=24M --numjobs=2 \
    --ioengine=psync --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting \
    >"$T/fio.txt" 2>&1 &
fio=$!
track_pid $fio
sleep 4
log "killing datanode 3"
local_cluster kill-datanode 3
wait $fio || { cat "$T/fio.txt"; fail "fio failed after a datanode died"; }
grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio reported errors"; }
pass
