#!/usr/bin/env python3
"""Interop of readyloop's WebSocket server with Python's `websockets` client library.

Starts the server itself (target/debug/readyloop, or $READYLOOP_BIN, or argv[1]) on port 0,
reads its `listening http ADDR` line, runs every check and exits non-zero if any failed.
With `--tls` the same checks run over wss:// (Python's `ssl`, trusting a self-signed
certificate made with `openssl req` for the run; the server gets `--tls-cert/--tls-key` and
prints `listening https ADDR`).
Every `websockets` check runs twice: with permessage-deflate (RFC 7692; the library's default,
so the server must negotiate it) and with compression off. Then `wsproto`, a second,
independent sans-IO implementation, negotiates permessage-deflate over a raw socket and counts
the bytes the server sends.
Needs `websockets` >= 13 (the sync client) and `wsproto`:
`python3 -m pip install websockets wsproto`.
"""
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import traceback

from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.sync.client import connect

MIB = 1 << 20
SIZES = [0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB]
PREFIX = "📢 새로운 알림: "


def text_of(n):
    """Exactly n UTF-8 bytes, with multi-byte characters where they fit."""
    pattern = ["한글", "abc", "ü", "📢", "xyz0123"]
    parts, size, i = [], 0, 0
    while size < n:
        p = pattern[i % len(pattern)]
        i += 1
        b = len(p.encode())
        if size + b > n:
            p, b = ".", 1
        parts.append(p)
        size += b
    return "".join(parts)


def binary_of(n):
    return bytes((i * 31) & 0xFF for i in range(n)) if n < MIB else os.urandom(n)


# Set by main for --tls: the client's SSL context (None: plaintext ws://).
TLS = None
# Set by main for each round: "deflate" (offer permessage-deflate) or None (offer nothing).
COMPRESSION = "deflate"


def ws(addr, path, compression=None):
    compression = compression or COMPRESSION
    if compression == "off":
        compression = None
    opts = dict(max_size=None, open_timeout=10, close_timeout=10, compression=compression)
    if TLS is None:
        c = connect(f"ws://{addr}{path}", **opts)
    else:
        c = connect_tls(addr, path, opts)
    deflate = [e for e in c.protocol.extensions if isinstance(e, PerMessageDeflate)]
    if compression == "deflate":
        # The server imposes no context takeover both ways (RFC 7692 §7.1.1).
        assert len(deflate) == 1, f"permessage-deflate not negotiated: {c.protocol.extensions}"
        assert deflate[0].remote_no_context_takeover and deflate[0].local_no_context_takeover
    else:
        assert not deflate, "an extension nobody offered"
    return c


# Opening handshakes over wss:// that the client lost and the script tried again.
TLS_RETRIES = []


def connect_tls(addr, path, opts):
    """Connects over wss://, trying the opening handshake again (twice at most) when it times
    out. websockets' sync client reads in a background thread while the main thread writes the
    upgrade request, and on this CPython (3.11) the two concurrent calls on one SSL object now
    and then lose the request when the server's TLS 1.3 session tickets arrive at that moment:
    the server never receives it. About one connection in 200 hangs so, against Python's own
    asyncio TLS server as much as against ours, and never with websockets' asyncio client
    (one thread, memory BIO). A server that does not answer fails all three tries."""
    port = addr.rsplit(":", 1)[1]
    for attempt in range(3):
        opts = dict(opts, open_timeout=5)
        try:
            return connect(f"wss://localhost:{port}{path}", ssl=TLS, **opts)
        except TimeoutError:
            if attempt == 2:
                raise
            TLS_RETRIES.append(path)


def self_signed(directory):
    """A certificate for localhost and 127.0.0.1 and its key (ECDSA P-256), made now."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE"],
        check=True, capture_output=True)
    return cert, key


def check_echo_sizes(addr):
    with ws(addr, "/echo") as c:
        for n in SIZES:
            t = text_of(n)
            c.send(t)
            got = c.recv(timeout=30)
            assert isinstance(got, str) and got == t, f"text of {n} bytes changed"
            b = binary_of(n)
            c.send(b)
            got = c.recv(timeout=30)
            assert isinstance(got, bytes) and got == b, f"binary of {n} bytes changed"


def check_fragmented(addr):
    with ws(addr, "/echo") as c:
        c.send(["Hel", "lo, ", "wörld ", "📢"])  # one message in four frames
        assert c.recv(timeout=10) == "Hello, wörld 📢"
        c.send([b"\x00\x01", b"", b"\x02" * 70000])
        assert c.recv(timeout=10) == b"\x00\x01" + b"\x02" * 70000
        c.ping(b"mid").wait(timeout=10)


def check_too_big(addr):
    with ws(addr, "/echo") as c:
        c.send(b"\x07" * (16 * MIB + 1))
        try:
            c.recv(timeout=30)
        except ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1009, f"closed with {e.rcvd}"
            return
        raise AssertionError("a message over 16 MiB was echoed")


def check_close_codes(addr):
    for code in (1000, 4000):
        with ws(addr, "/echo") as c:
            c.close(code=code, reason="bye")
            rcvd = c.protocol.close_rcvd
        assert rcvd is not None and rcvd.code == code, f"close {code} answered with {rcvd}"


def check_broadcast_mixed(addr):
    """One compressed and one plain recipient of the same broadcasts, both ways."""
    with ws(addr, "/ws", "deflate") as a, ws(addr, "/ws", "off") as b:
        for sender in (a, b):
            for text in ("short", text_of(1024), text_of(300_000)):
                sender.send(text)
                for c in (a, b):
                    got = c.recv(timeout=30)
                    assert got == PREFIX + text, f"broadcast of {len(text)} chars changed"


def check_broadcast(addr):
    with ws(addr, "/ws") as a, ws(addr, "/ws") as b:
        a.send("안녕하세요")
        for who, c in (("sender", a), ("other", b)):
            got = c.recv(timeout=10)
            assert got == PREFIX + "안녕하세요", f"{who} got {got!r}"
        b.send("reply")
        assert a.recv(timeout=10) == PREFIX + "reply"
        assert b.recv(timeout=10) == PREFIX + "reply"


# With deflate on, check_too_big is a decompression bomb: 16 MiB + 1 of one byte value
# compresses to about 16 KiB, and the server must refuse it while inflating (1009).
CHECKS = [check_echo_sizes, check_fragmented, check_too_big, check_close_codes, check_broadcast,
          check_broadcast_mixed]


def wsproto_deflate(addr):
    """wsproto (independent of websockets) with permessage-deflate, over a raw socket; the
    bytes received show the server's answer really is compressed."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Message,
                                Request, TextMessage)
    from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    if TLS is not None:
        sock = TLS.wrap_socket(sock, server_hostname="localhost")
    conn = WSConnection(ConnectionType.CLIENT)
    received = 0

    def pump():
        nonlocal received
        data = sock.recv(1 << 16)
        assert data, "the server closed the connection"
        received += len(data)
        conn.receive_data(data)
        return list(conn.events())

    sock.sendall(conn.send(Request(host="localhost", target="/echo",
                                   extensions=[WsprotoDeflate()])))
    events = []
    while not any(isinstance(e, AcceptConnection) for e in events):
        events += pump()
    accepted = next(e for e in events if isinstance(e, AcceptConnection))
    names = [e.name for e in accepted.extensions]
    assert names == ["permessage-deflate"], f"extensions {names}"
    for message, kind in ((text_of(4096), TextMessage), (binary_of(70_000), BytesMessage),
                          ("x" * 100_000, TextMessage)):
        received = 0
        sock.sendall(conn.send(Message(data=message)))
        parts = []
        while True:
            for e in pump():
                assert isinstance(e, kind), f"unexpected {e}"
                parts.append(e.data)
                if e.message_finished:
                    break
            else:
                continue
            break
        got = "".join(parts) if kind is TextMessage else b"".join(parts)
        assert got == message, f"{len(message)}-byte message changed"
        if message == "x" * 100_000:
            assert received < 2000, f"100 KB of one letter came back as {received} bytes"
    sock.sendall(conn.send(CloseConnection(code=1000)))
    while not any(isinstance(e, CloseConnection) for e in pump()):
        pass
    sock.close()


def main():
    global TLS
    args = [a for a in sys.argv[1:] if a != "--tls"]
    tls = "--tls" in sys.argv[1:]
    binary = (args[0] if args else None) or os.environ.get(
        "READYLOOP_BIN", "target/debug/readyloop"
    )
    with tempfile.TemporaryDirectory() as uploads:
        extra, scheme = [], "http"
        if tls:
            cert, key = self_signed(uploads)
            extra, scheme = ["--tls-cert", cert, "--tls-key", key], "https"
            TLS = ssl.create_default_context(cafile=cert)
        server = subprocess.Popen(
            [binary, "serve", "--http", "127.0.0.1:0", "--line", "off", "--hello", "off",
             "--ws-ping", "0", "--upload-dir", uploads] + extra,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            line = server.stdout.readline().strip()
            assert line.startswith(f"listening {scheme} "), f"unexpected first line {line!r}"
            addr = line.split()[-1]
            passed = failed = 0
            global COMPRESSION
            runs = [(c, mode) for mode in ("deflate", "off") for c in CHECKS]
            runs.append((wsproto_deflate, "deflate"))
            for check, mode in runs:
                COMPRESSION = mode
                name = f"{check.__name__} (compression {mode})"
                try:
                    check(addr)
                    print(f"ok   {name}")
                    passed += 1
                except Exception:
                    print(f"FAIL {name}")
                    traceback.print_exc()
                    failed += 1
        finally:
            server.kill()
            server.wait()
            server.stdout.close()
    if TLS_RETRIES:
        print(f"note: {len(TLS_RETRIES)} wss opening handshake(s) lost by the client's "
              f"thread race and tried again ({', '.join(TLS_RETRIES)})")
    print(f"ws_interop{' (wss)' if tls else ''}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
