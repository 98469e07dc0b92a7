#!/usr/bin/env bash
# put/get of a 200 MB random file through the keel CLI round-trips by
# checksum with 1 MiB chunks; stat shows every chunk on three domains; fsck
# --verify finds identical replicas; ls, mv, rm, mkdir behave.
source "$KEEL_SRC/tests/lib.sh"

cluster_up --datanodes 3 --chunk-size 1M
random_file "$T/in" $((200 * 1024 * 1024)) 42
want=$(sha256sum <"$T/in" | cut -d' ' -f1)

keel mkdir -p /vm/images
keel put "$T/in" /vm/images/disk.raw
keel get /vm/images/disk.raw "$T/out"
got=$(sha256sum <"$T/out" | cut -d' ' -f1)
[[ "$want" == "$got" ]] || fail "get returned different bytes ($want vs $got)"
[[ "$(keel cat /vm/images/disk.raw | sha256sum | cut -d' ' -f1)" == "$want" ]] || fail "cat differs"

# 200 chunks, each with 3 current replicas in 3 distinct domains.
keel --json stat /vm/images/disk.raw >"$T/stat.json"
[[ $(jq '.size' "$T/stat.json") -eq $((200 * 1024 * 1024)) ]] || fail "size wrong"
[[ $(jq '.chunks | length' "$T/stat.json") -eq 200 ]] || fail "expected 200 chunks"
bad=$(jq '[.chunks[] | select(([.replicas[] | select(.state == "current") | .domain] | unique | length) != 3)] | length' "$T/stat.json")
[[ "$bad" -eq 0 ]] || fail "$bad chunks are not on 3 distinct domains"

keel fsck --verify >"$T/fsck.txt" || { cat "$T/fsck.txt"; fail "fsck --verify unhealthy"; }
grep -q "HEALTHY" "$T/fsck.txt" || fail "fsck output: $(cat "$T/fsck.txt")"
[[ $(keel --json fsck --verify | jq '.chunks') -eq 200 ]] || fail "fsck did not see 200 chunks"

# Namespace basics through the CLI.
keel ls /vm/images | grep -qx "disk.raw" || fail "ls does not list disk.raw"
keel mv /vm/images/disk.raw /vm/images/renamed.raw
keel ls -l /vm/images | grep -q "renamed.raw" || fail "mv"
keel --json ls /vm/images | jq -e '.entries[0].size == 209715200' >/dev/null || fail "ls --json size"
if keel stat /vm/images/disk.raw 2>/dev/null; then fail "old name still there"; fi
keel rm -r /vm
if keel ls /vm 2>/dev/null; then fail "rm -r left /vm"; fi
# A missing file is a clear error and exit code 1.
set +e
keel get /nope "$T/x" 2>"$T/err"
rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "No such file" "$T/err" || fail "bad error for a missing file: rc=$rc $(cat "$T/err")"
pass
