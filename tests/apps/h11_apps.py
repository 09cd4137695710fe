"""Test applications for tests/test_http11.py (HTTP/1.1 behaviour of the server, RFC 9112).

`app` routes on PATH_INFO and is wrapped in `wsgiref.validate.validator` (PEP 3333 compliant);
`raw` serves the few cases a compliant app cannot produce (a body on a 204/304).

Routes of `app`:

    /echo...      read the whole body (wsgi.input.read(size) in a loop), answer JSON with the
                  method, path, query, body length, sha256 of the body and every HTTP_* key
    /slowread     sleep 0.3 s, then read the body like /echo (for 100-continue timing)
    /nobody       never touch wsgi.input; answer 200 "no body read"
    /cl           two chunks with the app's own Content-Length
    /list         one-chunk list body without Content-Length (not validated, see `app`)
    /gen          generator body without Content-Length (three chunks)
    /204, /304    empty bodies with those statuses
    /sleep        time.sleep(0.5), then 200 "slept"
    anything else 200 with the path as the body (with Content-Length)
"""

from __future__ import annotations

import hashlib
import json
import time
from wsgiref.validate import validator


def _read_all(environ) -> bytes:
    stream = environ["wsgi.input"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    chunks: list[bytes] = []
    if length > 0:
        left = length
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    elif environ.get("wsgi.input_terminated"):
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _echo(environ, start_response):
    body = _read_all(environ)
    payload = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "len": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        "content_length": environ.get("CONTENT_LENGTH", ""),
    }
    out = json.dumps(payload).encode("utf-8")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
    )
    return [out]


def _gen():
    yield b"alpha-"
    yield b"beta-"
    yield b"gamma"


def _app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    text = [("Content-Type", "text/plain")]
    if path.startswith("/echo"):
        return _echo(environ, start_response)
    if path == "/slowread":
        time.sleep(0.3)
        return _echo(environ, start_response)
    if path == "/catchbody":
        # An app that swallows a body error and answers anyway.
        try:
            _read_all(environ)
            note = b"read"
        except OSError:
            note = b"caught"
        start_response("200 OK", [*text, ("Content-Length", str(len(note)))])
        return [note]
    if path == "/nobody":
        start_response("200 OK", [*text, ("Content-Length", "12")])
        return [b"no body read"]
    if path == "/cl":
        start_response("200 OK", [*text, ("Content-Length", "11")])
        return [b"hello ", b"world"]
    if path == "/gen":
        start_response("200 OK", text)
        return _gen()
    if path == "/204":
        start_response("204 No Content", [])
        return []
    if path == "/304":
        start_response("304 Not Modified", [("ETag", '"abc"')])
        return []
    if path == "/sleep":
        time.sleep(0.5)
        start_response("200 OK", text)
        return [b"slept"]
    out = path.encode("latin-1")
    start_response("200 OK", [*text, ("Content-Length", str(len(out)))])
    return [out]


_validated = validator(_app)


def app(environ, start_response):
    """`_app` under wsgiref's validator, except /list: the validator wraps every returned
    iterable in its own iterator, which would hide from the server that the body is a list."""
    if environ.get("PATH_INFO") == "/list":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"one chunk body"]
    return _validated(environ, start_response)


def raw(environ, start_response):
    """Not validated: /204 and /304 hand the server body bytes it must not send."""
    path = environ.get("PATH_INFO", "")
    if path == "/204":
        start_response("204 No Content", [])
        return [b"must-not-appear"]
    if path == "/304":
        start_response("304 Not Modified", [])
        return [b"must-not-appear"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [path.encode("latin-1")]
