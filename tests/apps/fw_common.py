"""Pieces shared by the framework test apps (fw_flask, fw_django, ...).

Every fw_* module serves the same routes, so tests/test_frameworks.py can drive them alike:

    GET  /query?name=..&tag=..&tag=..   -> JSON {"name": .., "tags": [..]}
    POST /form   (urlencoded)           -> JSON {"fields": {name: value}}
    POST /json   (application/json)     -> JSON {"received": <body>, "content_length": n}
    GET  /stream?n=N&gate=T             -> text/plain "chunk 0\n" .. "chunk N-1\n"; after the
                                           first chunk it waits until /release?gate=T
    GET  /release?gate=T                -> text "released"
    GET  /headers  (X-Token: ..)        -> JSON {"token": ..}; headers X-Framework, X-Echo-Token
    GET  /boom                          -> the view raises RuntimeError (an app error)
    anything else                       -> 404

The gate lets a test prove the server streams: the client must see chunk 0 while the app is
still blocked producing chunk 1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

#: How long a stream waits for its gate before carrying on regardless (longer than the tests'
#: client timeout, so a server that buffers the body fails the test instead of passing late).
GATE_TIMEOUT = 15.0

_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def _gate(token: str) -> threading.Event:
    with _gates_lock:
        return _gates.setdefault(token, threading.Event())


def release(token: str) -> None:
    _gate(token).set()


def stream_chunks(count: int, gate: str | None) -> Iterator[bytes]:
    """Yield `count` lines; after the first, wait for `gate` to be released (if given)."""
    for i in range(count):
        if i == 1 and gate:
            released = _gate(gate).wait(GATE_TIMEOUT)
            with _gates_lock:
                _gates.pop(gate, None)
            if not released:
                yield b"gate timed out\n"
        yield f"chunk {i}\n".encode()


def boom(framework: str) -> None:
    raise RuntimeError(f"fw-boom from {framework}")


class _SizedReads:
    """Adapts `read()`-to-EOF calls into `read(size)` calls.

    werkzeug reads `wsgi.input` with a bare `read()` when the server sets
    `wsgi.input_terminated` (as ferrule does), but `wsgiref.validate` only allows
    `read(size)`. This shim sits between the validator and a werkzeug app so the
    validator can still check everything the server provides.
    """

    def __init__(self, stream):
        self._stream = stream

    def read(self, size=-1):
        if size is None or size < 0:
            parts = []
            while True:
                part = self._stream.read(65536)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        return self._stream.read(size)

    def readline(self, *args):
        return self._stream.readline(*args)

    def readlines(self, *args):
        return self._stream.readlines(*args)

    def __iter__(self):
        return iter(self._stream)


def sized_reads(app):
    """Wrap a werkzeug-based app so it reads wsgi.input in sized blocks."""

    def wrapped(environ, start_response):
        environ["wsgi.input"] = _SizedReads(environ["wsgi.input"])
        return app(environ, start_response)

    return wrapped
