"""Two WSGI middlewares. Each is a function that takes a WSGI app and returns a new one.

- ``timing(app)`` adds a ``Server-Timing: app;dur=<ms>`` response header (time until the app
  called start_response) and, once the server closes the response, writes one line per request
  to ``wsgi.errors``: ``GET /path -> 200 OK in 1.23 ms``.
- ``uppercase(app)`` upper-cases the body of text/* responses as it streams through.

Both pass ``exc_info`` on, return the server's ``write`` callable (wrapped where the body is
transformed), and make sure the wrapped app's ``close()`` is called, as PEP 3333 requires.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator


class _Response:
    """Wraps an app's response iterable: maps `transform` over its chunks and, when the server
    calls close(), closes the inner iterable and then runs `on_close`."""

    def __init__(
        self,
        iterable: Iterable[bytes],
        transform: Callable[[bytes], bytes] | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        self._iterable = iterable
        self._transform = transform
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        if self._transform is None:
            return iter(self._iterable)
        return map(self._transform, self._iterable)

    def close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            if self._on_close is not None:
                self._on_close()


def timing(app):
    """Time each request; report it in a response header and in the server's error log."""

    def timed_app(environ, start_response):
        started = time.perf_counter()
        status_seen = []

        def timed_start_response(status, headers, exc_info=None):
            elapsed_ms = (time.perf_counter() - started) * 1000
            status_seen[:] = [status]
            headers = [*headers, ("Server-Timing", f"app;dur={elapsed_ms:.3f}")]
            return start_response(status, headers, exc_info)

        def log() -> None:
            elapsed_ms = (time.perf_counter() - started) * 1000
            method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
            status = status_seen[0] if status_seen else "(no status)"
            errors = environ["wsgi.errors"]
            errors.write(f"{method} {path} -> {status} in {elapsed_ms:.2f} ms\n")
            errors.flush()

        try:
            result = app(environ, timed_start_response)
        except BaseException:
            log()
            raise
        return _Response(result, on_close=log)

    return timed_app


def uppercase(app):
    """Upper-case text/* response bodies. ``bytes.upper()`` only changes ASCII letters, so the
    body keeps its length and any Content-Length header stays correct."""

    def shouting_app(environ, start_response):
        is_text = []

        def checking_start_response(status, headers, exc_info=None):
            content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
            is_text[:] = [content_type.lower().startswith("text/")]
            write = start_response(status, headers, exc_info)

            def shouting_write(data: bytes) -> None:
                write(data.upper() if is_text[0] else data)

            return shouting_write

        def transform(chunk: bytes) -> bytes:
            # start_response has been called by the time the first chunk is produced.
            return chunk.upper() if is_text and is_text[0] else chunk

        return _Response(app(environ, checking_start_response), transform=transform)

    return shouting_app
