#!/usr/bin/env bash
# Bad input is refused, not obeyed (DESIGN promise 10), at a datanode:
# garbage and oversized frames close only their own connection; requests
# with a wrong payload checksum, a payload length other than the declared
# one, ranges outside the chunk, unknown chunks or bad chains get clear
# errors and change nothing; the datanode keeps serving.
source "$KEEL_SRC/tests/lib.sh"
source "$KEEL_SRC/tests/integration/dn_lib.sh"

cluster_up --datanodes 2 --chunk-size 1M --namenode-args "--lease-timeout 10m"
out=$(dntool alloc --nn "$NN" --client-id "$CID" --path /bad --replication 2) || fail "alloc: $out"
chunk=$(kv chunk "$out")
v=$(kv version "$out")
IFS=, read -r r1 r2 <<<"$(kv replicas "$out")"
A=${r1#*@}
out=$(dntool write --dn "$A" --chain "$r2" --chunk "$chunk" --version "$v" --len 1M --seed 4) ||
    fail "write: $out"
[[ "$(kv acked "$out")" == 1 ]] || fail "write: $out"

# Sends raw bytes; succeeds if the datanode closes the connection in time.
closes_on() {
    local host=${A%:*} port=${A##*:} junk rc=0
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf '%b' "$1" >&3
    read -r -t 10 -u 3 junk || rc=$?
    exec 3<&-
    [[ $rc -eq 1 ]] # end of file: closed (0 is an answer, >128 a timeout)
}
closes_on 'GET / HTTP/1.0\r\n\r\n' || fail "garbage did not close the connection"
# "KEL1", a 2 GiB header length, no payload, reserved 0.
closes_on 'KEL1\x00\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00' ||
    fail "an oversized header did not close the connection"
# Valid magic, a 5-byte header that is not protobuf.
closes_on 'KEL1\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff' ||
    fail "an undecodable header did not close the connection"

expect() { # STATUS-KEY WANT OUTPUT
    [[ "$(kv "$1" "$3")" == "$2" ]] || fail "expected $1=$2: $3"
}
out=$(dntool write --dn "$A" --chain "$r2" --chunk "$chunk" --version "$v" --len 4096 \
    --bad-checksum --seed 9) || true
expect status EBADMSG "$out"
out=$(dntool write --dn "$A" --chain "$r2" --chunk "$chunk" --version "$v" --len 4096 \
    --declare-len 8192 --seed 9) || true
expect status EINVAL "$out"
out=$(dntool write --dn "$A" --chain "$r2" --chunk "$chunk" --version "$v" --offset 1040000 \
    --len 10000 --span 0 --seed 9) || true
expect status EINVAL "$out"
out=$(dntool write --dn "$A" --chain "7@not-an-address" --chunk "$chunk" --version "$v" \
    --len 4096 --seed 9) || true
expect status EINVAL "$out"
out=$(dntool write --dn "$A" --chain "0@${r2#*@}" --chunk "$chunk" --version "$v" --len 4096 \
    --seed 9) || true
expect status EINVAL "$out"
# An unknown chunk: this node fails it and says so, the next node too.
out=$(dntool write --dn "$A" --chain "$r2" --chunk 999999 --version 1 --len 4096 --seed 9) ||
    fail "write: $out"
expect failed "${r1%%@*}:ENOENT,${r2%%@*}:ENOENT" "$out"
out=$(dntool read --dn "$A" --chunk 999999 --version 1 --len 10) || true
expect status ENOENT "$out"
out=$(dntool read --dn "$A" --chunk "$chunk" --version "$v" --offset 1048570 --len 10) || true
expect status EINVAL "$out"
out=$(dntool read --dn "$A" --chunk "$chunk" --version "$v" --offset 0 --len 0) || true
expect status EINVAL "$out"
out=$(dntool read --dn "$A" --chunk "$chunk" --version 0 --len 10) || true
expect status ESTALE "$out"
out=$(dntool checksums --dn "$A" --chunk 999999) || true
expect status ENOENT "$out"
out=$(dntool flush --dn "$A" --chunk 999999 --version 1) || true
expect status ENOENT "$out"

# Nothing changed on either replica, and both still serve.
for r in "$r1" "$r2"; do
    out=$(dntool read --dn "${r#*@}" --chunk "$chunk" --version "$v" --len 1M --seed 4) ||
        fail "read on ${r%%@*}: $out"
    expect match yes "$out"
done
pass
