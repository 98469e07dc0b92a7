#!/usr/bin/env bash
# A write moves a file's mtime, as on a local file system (backup tools and
# `make` rely on it), also when it overwrites in place and the size stays:
# after close(2), and after an fsync while the writer keeps the file open.
# Opening for writing without writing, and reading, move nothing. Another
# mount reads the new bytes at its next open.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --domains 3 --chunk-size 1M
A="$T/a" B="$T/b"
mount_keel "$A"
mount_keel "$B"

mtime() { keel --json stat /f | python3 -c 'import json, sys; print(json.load(sys.stdin)["mtime_ns"])'; }
newer() { (($(mtime) > $1)); }
MiB=$((1 << 20))

random_file "$T/v1" $((4 * MiB)) 1
cp "$T/v1" "$A/f"
m1=$(mtime)
cmp "$T/v1" "$B/f" || fail "mount B reads other bytes"

# Opened for writing, not written: nothing moves.
exec {fd}<>"$A/f"
exec {fd}>&-
sleep 0.5
[[ $(mtime) == "$m1" ]] || fail "an open for writing without a write moved the mtime"

# An overwrite in place (the size stays), then close(2).
random_file "$T/patch" "$MiB" 2
cp "$T/v1" "$T/v2"
dd if="$T/patch" of="$T/v2" bs=1M seek=1 conv=notrunc status=none
dd if="$T/patch" of="$A/f" bs=1M seek=1 conv=notrunc status=none
wait_for 5 "the overwrite to move the mtime past $m1" newer "$m1"
m2=$(mtime)
[[ $(stat -c %s "$A/f") -eq $((4 * MiB)) ]] || fail "the size changed"
cmp "$T/v2" "$B/f" || fail "mount B reads the old bytes after the writer's close"

# A writer that keeps the file open: its fsync moves the mtime.
random_file "$T/patch2" "$MiB" 3
exec {fd}<>"$A/f"
python3 - "$T/patch2" "$fd" <<'PY'
import os, sys
data = open(sys.argv[1], "rb").read()
fd = int(sys.argv[2])
os.pwrite(fd, data, 2 << 20)
os.fsync(fd)
PY
wait_for 5 "the fsync to move the mtime past $m2" newer "$m2"
m3=$(mtime)
exec {fd}>&-

# Reads alone move nothing.
cat "$A/f" "$B/f" >/dev/null
sleep 0.5
[[ $(mtime) == "$m3" ]] || fail "reads moved the mtime"
pass
