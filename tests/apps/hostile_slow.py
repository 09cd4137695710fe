"""Apps for the slow- and bad-client tests (tests/test_slow_clients.py), routed on PATH_INFO.

Each iterable notes its ``close()`` in the error log as ``SLOW-CLOSE <token>`` (the token is
the query string), so a test can tell that close() ran after the client went away.

    /stream    an endless body: 64 KiB chunks (at most 1 GiB) until the client goes away
    /upload    reads the whole body inside the iteration, then answers its length
    /big       a 64 MiB body in 1 MiB chunks (for clients that never read)
    /whole     a 24 MiB body with its Content-Length, returned whole (a list)
    /freed     an 8 MiB body made for the request, returned whole; notes in the error log
               when that body object is freed (``SLOW-FREED <token>``)
    /count     the number of HTTP_* keys in the environ
    other      200 with the path as the body

Wrapped in wsgiref's validator and werkzeug's LintMiddleware (hostile_lint.py), but for
/freed: both insist on exact ``bytes``, and its body is a subclass that can note its end.
"""

from __future__ import annotations

import sys

from hostile_lint import linted

CHUNK = b"s" * 65536
MIB = b"b" * (1 << 20)
WHOLE = bytes(range(256)) * (24 << 12)


class FreedBody(bytes):
    """A body that notes in the error log when it is freed."""

    token = ""

    def __del__(self) -> None:
        sys.stderr.write(f"SLOW-FREED {self.token}\n")
        sys.stderr.flush()


class Noted:
    """Yields `chunks()` and notes close() in the error log."""

    def __init__(self, environ, chunks):  # type: ignore[no-untyped-def]
        self.environ = environ
        self.chunks = chunks

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.chunks())

    def close(self) -> None:
        errors = self.environ["wsgi.errors"]
        errors.write(f"SLOW-CLOSE {self.environ.get('QUERY_STRING', '')}\n")
        errors.flush()


def _route(environ, start_response):  # type: ignore[no-untyped-def]
    path = environ.get("PATH_INFO", "")
    text = [("Content-Type", "text/plain")]
    if path == "/stream":
        start_response("200 OK", text)
        return Noted(environ, lambda: (CHUNK for _ in range(16384)))
    if path == "/upload":

        def read_all():  # type: ignore[no-untyped-def]
            total = 0
            while True:
                piece = environ["wsgi.input"].read(65536)
                if not piece:
                    break
                total += len(piece)
            yield str(total).encode()

        start_response("200 OK", text)
        return Noted(environ, read_all)
    if path == "/big":
        # no Content-Length: werkzeug's lint would call a body cut short by a client that
        # went away a mismatch
        start_response("200 OK", text)
        return Noted(environ, lambda: (MIB for _ in range(64)))
    if path == "/whole":
        start_response("200 OK", [*text, ("Content-Length", str(len(WHOLE)))])
        return [WHOLE]
    if path == "/count":
        body = str(sum(1 for k in environ if k.startswith("HTTP_"))).encode()
    else:
        body = path.encode("latin-1")
    start_response("200 OK", [*text, ("Content-Length", str(len(body)))])
    return [body]


_linted = linted(_route)


def fresh(environ, start_response):  # type: ignore[no-untyped-def]
    body = FreedBody(8 << 20)
    body.token = environ.get("QUERY_STRING", "")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):  # type: ignore[no-untyped-def]
    if environ.get("PATH_INFO") == "/freed":
        return fresh(environ, start_response)
    return _linted(environ, start_response)
