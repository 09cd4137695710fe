"""Misbehaving WSGI apps for tests/test_misbehaving.py, routed on the first PATH_INFO
segment (``/twice/<token>`` runs `twice`); the rest of the path is the test's token.

These break PEP 3333 on purpose, so they are not wrapped in a validator, except the two
well-behaved ones (`huge_chunk`, `slow_generator`).
"""

from __future__ import annotations

import time

from hostile_lint import linted

TEXT = [("Content-Type", "text/plain")]


def twice(environ, start_response):  # type: ignore[no-untyped-def]
    """start_response called a second time without exc_info."""
    start_response("200 OK", TEXT)
    start_response("202 Accepted", TEXT)
    return [b"must not be sent"]


BAD_VALUES = {
    "crlf": "a\r\nX-Injected: yes",
    "lf": "a\nX-Injected: yes",
    "cr": "a\rX-Injected: yes",
    "non-latin1": "snow \u2603",
}


def bad_header(environ, start_response):  # type: ignore[no-untyped-def]
    kind = environ["QUERY_STRING"]
    start_response("200 OK", [*TEXT, ("X-Bad", BAD_VALUES[kind])])
    return [b"must not be sent"]


def short_body(environ, start_response):  # type: ignore[no-untyped-def]
    """Declares 10 bytes, sends 5."""
    start_response("200 OK", [*TEXT, ("Content-Length", "10")])
    return [b"01234"]


def _huge_chunk(environ, start_response):  # type: ignore[no-untyped-def]
    """One 100 MiB chunk."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [b"h" * (100 << 20)]


def _slow_generator(environ, start_response):  # type: ignore[no-untyped-def]
    """Five chunks, 0.2 s apart."""
    start_response("200 OK", TEXT)
    for i in range(5):
        if i:
            time.sleep(0.2)
        yield b"chunk%d;" % i


def ok(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", [*TEXT, ("Content-Length", "2")])
    return [b"ok"]


APPS = {
    "twice": twice,
    "bad_header": bad_header,
    "short_body": short_body,
    "huge_chunk": linted(_huge_chunk),
    "slow_generator": linted(_slow_generator),
    "ok": ok,
}


def app(environ, start_response):  # type: ignore[no-untyped-def]
    name = environ.get("PATH_INFO", "/ok").split("/")[1] or "ok"
    return APPS[name](environ, start_response)
