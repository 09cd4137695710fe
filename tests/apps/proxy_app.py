"""The app behind real nginx and HAProxy in tests/test_proxies.py.

Routes (every body is derived from the request, so the client can check it byte for byte):

    /health          200 "ok" (HAProxy's health check)
    /item?N          GET: "item N pid=P " followed by N % 997 bytes of filler, Content-Length
    /echo            POST: the request body, back, after "echo LEN " (Content-Length)
    /stream?N        GET: N lines "line I of N\\n" from a generator without Content-Length,
                     so an HTTP/1.1 peer gets a chunked response
    /conns           JSON: requests seen, and the connections they could have come on (below)
    anything else    200 "pid=P" (tests/conftest.py `pid_of` reads it)

Counting connections: on every request the app lists the sockets its own process holds
(/proc/self/fd entries `socket:[INODE]`). The connection carrying a request is open while the
app runs, so the union of those inodes over all requests contains every connection that carried
a request (plus the listening socket and idle connections open at the time): its size is an
upper bound on the connections ferrule accepted and served. Kernel socket inodes are not reused
within a test's lifetime.
"""

from __future__ import annotations

import json
import os
import threading

_lock = threading.Lock()
_sockets: set[str] = set()
_requests = 0
_remote_ports: set[str] = set()


def filler(n: int) -> bytes:
    return (b"0123456789abcdefghijklmnopqrstuvwxyz" * (n // 36 + 1))[:n]


def item_body(n: int, pid: int) -> bytes:
    return f"item {n} pid={pid} ".encode() + filler(n % 997)


def stream_lines(n: int):
    for i in range(n):
        yield f"line {i} of {n}\n".encode()


def _open_sockets() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile by another thread
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def _read_body(environ) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    chunks = []
    while length > 0:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def app(environ, start_response):
    global _requests
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    sockets = _open_sockets()
    with _lock:
        _requests += 1
        _sockets.update(sockets)
        if environ.get("REMOTE_PORT"):
            _remote_ports.add(f"{environ.get('REMOTE_ADDR')}:{environ['REMOTE_PORT']}")
    headers = [("Content-Type", "text/plain")]
    if path == "/stream":
        start_response("200 OK", headers)
        return stream_lines(int(query or 10))
    if path == "/health":
        body = b"ok"
    elif path == "/item":
        body = item_body(int(query or 0), os.getpid())
    elif path == "/echo":
        data = _read_body(environ)
        body = f"echo {len(data)} ".encode() + data
    elif path == "/conns":
        with _lock:
            stats = {
                "requests": _requests,
                "sockets": len(_sockets),
                "remote_ports": len(_remote_ports),
            }
        body = json.dumps(stats).encode()
        headers = [("Content-Type", "application/json")]
    else:
        body = f"pid={os.getpid()}".encode()
    headers.append(("Content-Length", str(len(body))))
    start_response("200 OK", headers)
    return [body]
