"""The soak test's app: one WSGI app mixing every workload, each answer checkable by the client.

Served with ``--pythonpath bench/apps`` so that it reuses the benchmark apps:

- ``GET /``                 bench/apps/hello.py (13 bytes, Content-Length)
- ``GET /json``, ``POST /echo``  bench/apps/flaskapp.py (Flask, JSON)
- ``POST /upload``          reads ``wsgi.input`` (``?read=N`` bytes at a time, or all at once
                            with ``?read=0``) and answers ``"<length> <crc32>"``
- ``GET /stream?n=N&size=S[&fail=K]``  N chunks of S bytes from an iterable with ``close()``,
                            no Content-Length (so chunked); chunk i is S times the byte
                            ``a + i % 26``. With ``fail=K`` it raises before chunk K: for
                            K > 0 the head is out and the server can only cut the
                            connection; for K = 0 nothing is sent yet, so a 500.
- ``GET /error``            raises before ``start_response``: a 500
- ``GET /stats``            this process's counters as JSON (streams not yet closed, ...)
- ``POST /trim``            ``malloc_trim(0)``: glibc hands the free memory it keeps cached in
                            its arenas back to the system; answers this process's pid (JSON)

The counters let the soak run check that the server calls ``close()`` on every iterable it got,
including those of responses whose client went away (PEP 3333).

To check that the soak run notices leaks (``run.py --leak-bytes/--leak-fd-every``), the app
leaks on purpose when told by the environment: ``SOAK_LEAK_BYTES`` bytes kept per ``GET /``,
one ``/dev/null`` opened and never closed every ``SOAK_LEAK_FD_EVERY`` ``GET /``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading
import zlib
from urllib.parse import parse_qs

from flaskapp import app as flask_app
from hello import app as hello_app

READ_DEFAULT = 64 * 1024
LETTERS = [bytes([ord("a") + i]) for i in range(26)]
_lock = threading.Lock()
_counts = {"streams_opened": 0, "streams_closed": 0, "uploads": 0, "errors_raised": 0, "hello": 0}
LEAK_BYTES = int(os.environ.get("SOAK_LEAK_BYTES", "0"))
LEAK_FD_EVERY = int(os.environ.get("SOAK_LEAK_FD_EVERY", "0"))
_leaked: list = []


try:
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def _count(name: str, delta: int = 1) -> None:
    with _lock:
        _counts[name] += delta


class AppError(RuntimeError):
    """Raised on purpose by /error and /stream?fail=K."""


class Stream:
    """``n`` chunks of ``size`` bytes; counts its creation and its close()."""

    def __init__(self, n: int, size: int, fail: int | None):
        self.n, self.fail = n, fail
        self.chunks = [letter * size for letter in LETTERS]
        self.closed = False
        _count("streams_opened")

    def __iter__(self):
        for i in range(self.n):
            if i == self.fail:
                _count("errors_raised")
                raise AppError(f"soak: failing on purpose before chunk {i}")
            yield self.chunks[i % 26]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            _count("streams_closed")


def _leak() -> None:
    with _lock:
        _counts["hello"] += 1
        n = _counts["hello"]
    if LEAK_BYTES:
        _leaked.append(bytes(LEAK_BYTES))
    if LEAK_FD_EVERY and n % LEAK_FD_EVERY == 0:
        _leaked.append(open(os.devnull, "rb"))  # leaked on purpose


def _text(start_response, status: str, body: bytes, ctype: str = "text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _upload(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    size = int(query.get("read", [READ_DEFAULT])[0])
    stream = environ["wsgi.input"]
    total, crc = 0, 0
    if size == 0:
        data = stream.read()
        total, crc = len(data), zlib.crc32(data)
    else:
        chunk = stream.read(size)
        while chunk:
            total += len(chunk)
            crc = zlib.crc32(chunk, crc)
            chunk = stream.read(size)
    _count("uploads")
    return _text(start_response, "200 OK", f"{total} {crc}".encode())


def _stream(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    n, size = int(query["n"][0]), int(query["size"][0])
    fail = int(query["fail"][0]) if "fail" in query else None
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Stream(n, size, fail)


def _stats(start_response):
    with _lock:
        counts = dict(_counts, pid=os.getpid())
    return _text(start_response, "200 OK", json.dumps(counts).encode(), "application/json")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        if LEAK_BYTES or LEAK_FD_EVERY:
            _leak()
        return hello_app(environ, start_response)
    if path in ("/json", "/echo"):
        return flask_app(environ, start_response)
    if path == "/upload":
        return _upload(environ, start_response)
    if path == "/stream":
        return _stream(environ, start_response)
    if path == "/error":
        _count("errors_raised")
        raise AppError("soak: failing on purpose")
    if path == "/stats":
        return _stats(start_response)
    if path == "/trim":
        trimmed = _malloc_trim(0) if _malloc_trim is not None else None
        body = json.dumps({"pid": os.getpid(), "trimmed": trimmed}).encode()
        return _text(start_response, "200 OK", body, "application/json")
    return _text(start_response, "404 Not Found", b"not found")
