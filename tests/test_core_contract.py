"""The contract between the Rust core (``ferrule._ferrule.Server``) and a supervisor:
``max_requests`` (a worker stops by itself after that many requests) and the heartbeat record
it writes to a shared file (see src/server/heartbeat.rs and docs/deployment.md).

The server runs in this process, on a thread: these are the core's own promises, tested
without the CLI or the supervisor in between.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.validate import validator

import pytest
import requests

_ferrule = pytest.importorskip("ferrule._ferrule")

RECORD = 512
TIMEOUT = 10.0


@validator
def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        time.sleep(float(environ["QUERY_STRING"] or 1))
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@contextmanager
def running(**config) -> Iterator[tuple[str, threading.Thread, object]]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = _ferrule.Server(app, [listener.fileno()], {"threads": 4, **config})
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        yield url, thread, server
    finally:
        server.stop(graceful=False)
        thread.join(TIMEOUT)
        listener.close()


def test_max_requests_stops_the_server_and_the_last_response_closes():
    with running(max_requests=3) as (url, thread, _):
        with requests.Session() as s:
            first = [s.get(f"{url}/{i}", timeout=TIMEOUT) for i in range(2)]
            last = s.get(f"{url}/last", timeout=TIMEOUT)
        assert [r.text for r in first] == ["/0", "/1"]
        assert all(r.headers.get("Connection") is None for r in first)
        assert last.text == "/last"
        assert last.headers.get("Connection") == "close"
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "run() must return once max_requests were served"


def read_record(fd: int, offset: int) -> dict:
    raw = os.pread(fd, RECORD, offset)
    count, now, oldest, served, pid = struct.unpack_from("<QQQQI", raw)
    line = raw[64:320].split(b"\0", 1)[0].decode()
    return {
        "count": count,
        "now": now,
        "oldest": oldest,
        "served": served,
        "pid": pid,
        "line": line,
    }


def wait_record(fd: int, offset: int, check, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rec = read_record(fd, offset)
        if check(rec):
            return rec
        assert time.monotonic() < deadline, f"heartbeat record never matched: {rec}"
        time.sleep(0.05)


def test_heartbeat_record_names_the_oldest_running_request():
    fd = os.memfd_create("ferrule-heartbeat-test")
    offset = 3 * RECORD  # a worker's own slot in a shared file
    os.ftruncate(fd, 8 * RECORD)
    try:
        with running(heartbeat_fd=fd, heartbeat_offset=offset) as (url, _, _):
            idle = wait_record(fd, offset, lambda r: r["count"] >= 2)
            assert idle["pid"] == os.getpid()
            assert idle["oldest"] == 0 and idle["line"] == ""
            assert abs(time.monotonic_ns() - idle["now"]) < 2e9  # the same clock
            assert requests.get(f"{url}/x", timeout=TIMEOUT).text == "/x"

            hung = threading.Thread(
                target=requests.get, args=(f"{url}/hang?2.5",), kwargs={"timeout": TIMEOUT}
            )
            started = time.monotonic_ns()
            hung.start()
            rec = wait_record(
                fd, offset, lambda r: r["oldest"] > 0 and r["now"] - r["oldest"] > 1.2e9
            )
            assert rec["line"] == "GET /hang?2.5 HTTP/1.1"
            assert rec["oldest"] >= started - 0.3e9
            assert rec["served"] >= 2
            hung.join(TIMEOUT)
            after = wait_record(fd, offset, lambda r: r["oldest"] == 0)
            assert after["count"] > rec["count"]
            # other slots of the shared file are left alone
            assert os.pread(fd, RECORD, 0) == bytes(RECORD)
    finally:
        os.close(fd)
