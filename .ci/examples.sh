#!/usr/bin/env bash
# Runs each example briefly against a real client and checks what it answers.
set -euo pipefail
cd "$(dirname "$0")/.."
ex=target/debug/examples

out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

"$ex/hello_server" 127.0.0.1:0 >"$out/hello.txt" &
hello_pid=$!
for _ in $(seq 50); do grep -q listening "$out/hello.txt" && break; sleep 0.1; done
addr=$(awk '/^listening/ {print $3}' "$out/hello.txt")
got=$(python3 -c "
import socket,sys
h,p=sys.argv[1].rsplit(':',1)
s=socket.create_connection((h,int(p)),timeout=5)
data=b''
while True:
    b=s.recv(100)
    if not b: break
    data+=b
print(data.decode(),end='')" "$addr")
[ "$got" = "Hello, World!" ] || { echo "hello_server answered: $got"; exit 1; }
kill "$hello_pid"
echo "hello_server ok"

"$ex/custom_protocol" --secs 3 --addr 127.0.0.1:0 >"$out/kv.txt" &
kv_pid=$!
for _ in $(seq 50); do grep -q listening "$out/kv.txt" && break; sleep 0.1; done
addr=$(awk '/^listening/ {print $3}' "$out/kv.txt")
got=$(python3 -c "
import socket,sys
h,p=sys.argv[1].rsplit(':',1)
s=socket.create_connection((h,int(p)),timeout=5)
s.sendall(b'SET a 1\nGET a\nDEL a\nGET a\n')
s.shutdown(socket.SHUT_WR)
data=b''
while True:
    b=s.recv(100)
    if not b: break
    data+=b
print(data.decode(),end='')" "$addr")
[ "$got" = $'OK\n1\n1\n(nil)' ] || { echo "custom_protocol answered: $got"; exit 1; }
wait "$kv_pid"
grep -q "stopped" "$out/kv.txt" || { echo "custom_protocol did not stop through its Handle"; exit 1; }
echo "custom_protocol ok"
