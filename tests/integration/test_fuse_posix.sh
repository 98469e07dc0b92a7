#!/usr/bin/env bash
# POSIX basics on the mount: rename over an existing file, unlink of an open
# file, ls -l sizes and times, df figures, hard and symbolic links; and the
# mount survives a namenode restart underneath it. Also the mount's read-ahead.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M --datanode-args "--capacity 8G"
M="$T/mnt"
mount_keel "$M"

# keel-fuse raises the mount's read-ahead to its largest request, where it
# may write sysfs (as root, sysfs not read-only)
ra_file="/sys/class/bdi/$(mountpoint -d "$M")/read_ahead_kb"
if [[ -w $ra_file ]]; then
    ra=$(cat "$ra_file")
    [[ $ra == 1024 ]] || fail "read-ahead of the mount is $ra KiB, not 1024"
fi

# rename over an existing file
echo one >"$M/a"
echo two >"$M/b"
mv "$M/a" "$M/b"
[[ "$(cat "$M/b")" == one ]] || fail "rename over an existing file"
[[ ! -e "$M/a" ]] || fail "old name remains"

# small reads (answered off libfuse, from libkeel's completion): whole,
# short at the end of the file, empty past it, and many at once
head -c 10000 /dev/urandom >"$T/small"
cp "$T/small" "$M/small"
for i in 0 1 2 3; do
    got=$(dd if="$M/small" iflag=direct bs=4096 skip=$i count=1 status=none | od -An -tx1 |
        tr -d ' \n') || fail "direct 4 KiB read $i of a 10000-byte file failed"
    want=$(dd if="$T/small" bs=4096 skip=$i count=1 status=none | od -An -tx1 | tr -d ' \n')
    [[ "$got" == "$want" ]] || fail "direct 4 KiB read $i of a 10000-byte file"
done
pids=()
for i in 1 2 3 4 5 6 7 8; do
    dd if="$M/small" iflag=direct bs=4096 status=none >"$T/small.$i" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "parallel direct reads"; done
for i in 1 2 3 4 5 6 7 8; do cmp "$T/small.$i" "$T/small" || fail "parallel direct read $i"; done
rm "$M/small"

# direct writes and fsyncs (answered off libfuse too): eight writers at once
# on one new file, out of order and each growing it, then a tail with a
# short last block and an fsync; read back through a fresh open
head -c 40000 /dev/urandom >"$T/dw"
: >"$M/dw"
pids=()
for i in 7 3 0 5 1 6 2 4; do
    dd if="$T/dw" of="$M/dw" oflag=direct conv=notrunc bs=4096 skip=$i seek=$i count=1 \
        status=none & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "parallel direct writes"; done
dd if="$T/dw" of="$M/dw" oflag=direct conv=notrunc,fsync bs=4096 skip=8 seek=8 status=none ||
    fail "direct write of the tail, and fsync"
[[ $(stat -c %s "$M/dw") -eq 40000 ]] || fail "size after direct writes: $(stat -c %s "$M/dw")"
cmp "$M/dw" "$T/dw" || fail "direct writes read back"
rm "$M/dw"

# unlink of an open file: the open descriptor still reads and writes it
head -c 3000000 /dev/urandom >"$T/data"
cp "$T/data" "$M/open"
exec 8<"$M/open"
rm "$M/open"
[[ ! -e "$M/open" ]] || fail "unlinked file still visible"
cmp - "$T/data" <&8 || fail "open descriptor lost the data"
exec 8<&-
sleep 1
[[ -z "$(ls -A "$M" | grep -v '^b$')" ]] || fail "leftovers: $(ls -A "$M")"

# ls -l sizes and times
truncate -s 5G "$M/sparse"
[[ $(stat -c %s "$M/sparse") -eq $((5 << 30)) ]] || fail "truncate -s size"
ls -l "$M/sparse" | grep -q " 5368709120 " || fail "ls -l size: $(ls -l "$M/sparse")"
touch -d "2020-02-03 04:05:06" "$M/sparse"
[[ $(stat -c %Y "$M/sparse") -eq $(date -d "2020-02-03 04:05:06" +%s) ]] || fail "mtime"
sleep 1.2 # attribute cache
before=$(stat -c %Y "$M/b")
sleep 1.1
echo more >>"$M/b"
sleep 1.2
[[ $(stat -c %Y "$M/b") -gt $before ]] || fail "mtime did not move on write"
[[ $(stat -c %s "$M/b") -eq 9 ]] || fail "append size"

# hard and symbolic links, directories
ln "$M/b" "$M/b2"
[[ $(stat -c %h "$M/b2") -eq 2 ]] || fail "link count of the new name"
sleep 1.2 # the other name's attributes are cached for up to a second
[[ $(stat -c %h "$M/b") -eq 2 ]] || fail "link count"
ln -s b "$M/lnk"
[[ "$(readlink "$M/lnk")" == b && "$(cat "$M/lnk")" == "$(cat "$M/b")" ]] || fail "symlink"
mkdir -p "$M/d1/d2"
mv "$M/d1" "$M/d3"
[[ -d "$M/d3/d2" ]] || fail "directory rename"
if rmdir "$M/d3" 2>/dev/null; then fail "rmdir of a non-empty directory"; fi
rmdir "$M/d3/d2" "$M/d3"

# df: 3 datanodes x 8 GiB, replication 3 -> 8 GiB usable
total=$(df -B1 --output=size "$M" | tail -1 | tr -d ' ')
[[ $total -ge $((7 << 30)) && $total -le $((8 << 30)) ]] || fail "df size $total"

# fallocate mode 0 grows the file; punching holes is refused
fallocate -l 3M "$M/falloc"
[[ $(stat -c %s "$M/falloc") -eq $((3 << 20)) ]] || fail "fallocate"
if fallocate -p -o 0 -l 4096 "$M/falloc" 2>/dev/null; then fail "punch hole accepted"; fi

# The namenode restarts under the mount: it keeps working.
cp "$T/data" "$M/before"
local_cluster restart-namenode
cmp "$M/before" "$T/data" || fail "read after namenode restart"
cp "$T/data" "$M/after"
cmp "$M/after" "$T/data" || fail "write after namenode restart"
ls "$M" | grep -q after || fail "listing after namenode restart"

unmount_keel "$M"
pass
