"""A large request body arrives before the app is called (src/server/body_wait.rs).

A body over 64 KiB (with Content-Length) waits in the kernel's socket buffer until it is
all there, so the app's reads do not block; one slower than a second streams to the app as
it arrives; after such a body the connection still answers its next small request at once.
The app (tests/apps/body_wait_app.py) reports when it was called on CLOCK_MONOTONIC, which
this process shares.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest
from conftest import shared_server, token
from hostile_client import Client, request, wait_for_log_after

BODY = os.urandom(100_000)
FIRST = 10_000


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with shared_server(tmp_path_factory, "body_wait", "--threads", "2", "body_wait_app:app") as s:
        yield s


def head(query: str, length: int = len(BODY)) -> bytes:
    return request("POST", f"/?{query}", [("Content-Length", str(length))], b"")


def answer(reply) -> tuple[float, int, str]:  # type: ignore[no-untyped-def]
    assert reply.status == 200, (reply.status, reply.body[:200])
    called, n, digest = reply.body.decode().split()
    return float(called), int(n), digest


def test_app_is_called_once_the_body_has_arrived(srv):
    with Client.to(srv, 10) as c:
        c.send(head(token()) + BODY[:FIRST])
        time.sleep(0.3)
        rest_sent = time.monotonic()
        c.send(BODY[FIRST:])
        called, n, digest = answer(c.response(timeout=10))
    assert (n, digest) == (len(BODY), hashlib.sha256(BODY).hexdigest())
    assert called >= rest_sent, "the app was called before its body arrived"


def test_a_slow_body_streams_to_the_app_after_a_second(srv):
    mark = len(srv.log)
    t = token()
    with Client.to(srv, 10) as c:
        # Let the new connection's first readiness event be handled before the request
        # arrives: a parked request goes at its connection's next event of any kind, and
        # that one, handled late, would start the app at once (seen in CI).
        time.sleep(0.2)
        c.send(head(t) + BODY[:FIRST])
        sent = time.monotonic()
        m = wait_for_log_after(srv, mark, rf"CALLED {t} (\S+)", timeout=5)
        waited = float(m.group(1)) - sent
        c.send(BODY[FIRST:])
        _, n, digest = answer(c.response(timeout=10))
    assert (n, digest) == (len(BODY), hashlib.sha256(BODY).hexdigest())
    assert 0.9 <= waited <= 3.0, waited


def test_the_next_small_request_is_answered_at_once(srv):
    with Client.to(srv, 10) as c:
        c.send(head(token()) + BODY[:FIRST])
        time.sleep(0.2)
        c.send(BODY[FIRST:])
        answer(c.response(timeout=10))
        t0 = time.monotonic()
        c.send(head(token(), 3) + b"abc")
        _, n, _ = answer(c.response(timeout=10))
        assert n == 3
        assert time.monotonic() - t0 < 0.5, "the next request waited for a low-water mark"


def test_pipelined_large_bodies(srv):
    with Client.to(srv, 10) as c:
        c.send((head(token()) + BODY) * 3)
        for _ in range(3):
            _, n, digest = answer(c.response(timeout=10))
            assert (n, digest) == (len(BODY), hashlib.sha256(BODY).hexdigest())


def test_unix_socket_bodies_stream(start_server, tmp_path):
    """No low-water mark on a unix socket: the body streams to the app, whole."""
    path = tmp_path / "s.sock"
    start_server("--bind", f"unix:{path}", "body_wait_app:app", bind=False)
    closing = request(
        "POST", f"/?{token()}", [("Content-Length", str(len(BODY))), ("Connection", "close")], b""
    )
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(closing + BODY)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    assert data.endswith(f" {len(BODY)} {hashlib.sha256(BODY).hexdigest()}".encode())
