#!/usr/bin/env python3
"""Interop of readyloop's WebSocket server with Python's `websockets` client library.

Starts the server itself (target/debug/readyloop, or $READYLOOP_BIN, or argv[1]) on port 0,
reads its `listening http ADDR` line, runs every check and exits non-zero if any failed.
Needs `websockets` >= 13 (the sync client): `python3 -m pip install websockets`.
"""
import os
import subprocess
import sys
import tempfile
import traceback

from websockets.exceptions import ConnectionClosed
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


def ws(addr, path):
    return connect(f"ws://{addr}{path}", max_size=None, open_timeout=10, close_timeout=10)


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


def check_broadcast(addr):
    with ws(addr, "/ws") as a, ws(addr, "/ws") as b:
        a.send("안녕하세요")
        for who, c in (("sender", a), ("other", b)):
            got = c.recv(timeout=10)
            assert got == PREFIX + "안녕하세요", f"{who} got {got!r}"
        b.send("reply")
        assert a.recv(timeout=10) == PREFIX + "reply"
        assert b.recv(timeout=10) == PREFIX + "reply"


CHECKS = [check_echo_sizes, check_fragmented, check_too_big, check_close_codes, check_broadcast]


def main():
    binary = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get(
        "READYLOOP_BIN", "target/debug/readyloop"
    )
    with tempfile.TemporaryDirectory() as uploads:
        server = subprocess.Popen(
            [binary, "serve", "--http", "127.0.0.1:0", "--line", "off", "--hello", "off",
             "--ws-ping", "0", "--upload-dir", uploads],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            line = server.stdout.readline().strip()
            assert line.startswith("listening http "), f"unexpected first line {line!r}"
            addr = line.split()[-1]
            passed = failed = 0
            for check in CHECKS:
                try:
                    check(addr)
                    print(f"ok   {check.__name__}")
                    passed += 1
                except Exception:
                    print(f"FAIL {check.__name__}")
                    traceback.print_exc()
                    failed += 1
        finally:
            server.kill()
            server.wait()
            server.stdout.close()
    print(f"ws_interop: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
