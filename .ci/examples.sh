#!/usr/bin/env bash
# Runs each example briefly against a real client and checks what it answers.
set -euo pipefail
cd "$(dirname "$0")/.."
ex=target/debug/examples

out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

# Connects to ADDR ($1), sends BYTES ($2, Python bytes-literal escapes; `--shut` as $3
# half-closes after sending), reads until EOF and prints what came back.
exchange() {
    python3 -c "
import socket,sys
h,p=sys.argv[1].rsplit(':',1)
s=socket.create_connection((h,int(p)),timeout=5)
s.sendall(sys.argv[2].encode().decode('unicode_escape').encode('latin-1'))
if len(sys.argv) > 3: s.shutdown(socket.SHUT_WR)
data=b''
while True:
    b=s.recv(100)
    if not b: break
    data+=b
print(data.decode(),end='')" "$@"
}

# Waits for the `listening NAME ADDR` line in $1 and prints ADDR.
listening_addr() {
    for _ in $(seq 100); do grep -q '^listening' "$1" && break; sleep 0.1; done
    awk '/^listening/ {print $3; exit}' "$1"
}

"$ex/hello_server" 127.0.0.1:0 >"$out/hello.txt" &
hello_pid=$!
addr=$(listening_addr "$out/hello.txt")
got=$(exchange "$addr" "")
[ "$got" = "Hello, World!" ] || { echo "hello_server answered: $got"; exit 1; }
kill "$hello_pid"
echo "hello_server ok"

"$ex/custom_protocol" --secs 3 --addr 127.0.0.1:0 >"$out/kv.txt" &
kv_pid=$!
addr=$(listening_addr "$out/kv.txt")
got=$(exchange "$addr" 'SET a 1\nGET a\nDEL a\nGET a\n' --shut)
[ "$got" = $'OK\n1\n1\n(nil)' ] || { echo "custom_protocol answered: $got"; exit 1; }
wait "$kv_pid"
grep -q "stopped" "$out/kv.txt" || { echo "custom_protocol did not stop through its Handle"; exit 1; }
echo "custom_protocol ok"

"$ex/line_server" 127.0.0.1:0 >"$out/line.txt" &
line_pid=$!
addr=$(listening_addr "$out/line.txt")
# A raw socket client: two lines in one segment, then `exit`; the echoes come back, then EOF.
got=$(exchange "$addr" 'hello\nworld\r\nexit\nignored\n')
[ "$got" = $'hello\nworld' ] || { echo "line_server answered: $got"; exit 1; }
# The port of the users' client: stdin lines go out, echoes come back, stdin EOF sends `exit`.
got=$(printf 'one\ntwo\n' | timeout 10 "$ex/line_client" "$addr" 2>/dev/null)
[ "$got" = $'one\ntwo' ] || { echo "line_client printed: $got"; exit 1; }
kill -TERM "$line_pid"
wait "$line_pid" || { echo "line_server did not exit cleanly on SIGTERM"; exit 1; }
grep -q 'received data: world' "$out/line.txt" || { echo "line_server did not print the lines"; exit 1; }
grep -q '^stopped' "$out/line.txt" || { echo "line_server did not stop"; exit 1; }
echo "line_server + line_client ok"

mkdir "$out/up"
"$ex/upload_and_broadcast" 127.0.0.1:0 --dir "$out/up" >"$out/upload.txt" &
up_pid=$!
addr=$(listening_addr "$out/upload.txt")
# Two clients: A uploads and says something; both must get the worker's `saved` broadcast
# (sent back to the loop through Handle::send) and the announcement.
python3 - "$addr" <<'PY' || { echo "upload_and_broadcast failed; server said:"; cat "$out/upload.txt"; exit 1; }
import socket, sys
h, p = sys.argv[1].rsplit(':', 1)
def conn():
    s = socket.create_connection((h, int(p)), timeout=5)
    return s, s.makefile('rb')
a, af = conn()
b, bf = conn()
line = lambda f: f.readline().decode().rstrip('\n')
a.sendall(b'upload hello.txt hi there\n')
assert line(af) == 'queued hello.txt', 'A: no queued reply'
for name, f in (('A', af), ('B', bf)):
    got = line(f)
    assert got == 'saved hello.txt (8 bytes)', f'{name} got {got!r}'
a.sendall('say 안녕\n'.encode())
for name, f in (('A', af), ('B', bf)):
    got = line(f)
    assert got == '📢 새로운 알림: 안녕', f'{name} got {got!r}'
a.sendall(b'upload ../x oops\n')
assert line(af) == 'error: bad name'
PY
[ "$(cat "$out/up/hello.txt")" = "hi there" ] || { echo "upload_and_broadcast did not save the file"; exit 1; }
kill -TERM "$up_pid"
wait "$up_pid" || { echo "upload_and_broadcast did not exit cleanly on SIGTERM"; exit 1; }
grep -q '^stopped' "$out/upload.txt" || { echo "upload_and_broadcast did not stop"; exit 1; }
echo "upload_and_broadcast ok"
