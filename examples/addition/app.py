"""A JSON addition service: send ``{"val_a": 2, "val_b": 3}`` in a GET body, get ``{"sum": 5}``.

A GET request with a body is unusual but legal HTTP/1.1, and a WSGI server must hand the body
to the application like any other. Errors:

    400  the body is not JSON, not an object, or lacks val_a / val_b
    405  any method other than GET
    413  the body is over 64 KiB
    422  val_a or val_b is not a finite number (or the sum overflows)

Run from the repository root::

    ferrule --chdir examples/addition app:app

and try it with ``python examples/addition/client.py 2 3``.
"""

from __future__ import annotations

import json
import math

MAX_BODY = 64 * 1024
USAGE = 'send a JSON object like {"val_a": 2, "val_b": 3} in the request body'


def _read_body(environ: dict) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY."""
    stream = environ["wsgi.input"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    if length > 0:
        return stream.read(length)
    if not environ.get("wsgi.input_terminated"):
        return b""
    chunks, total = [], 0  # chunked request body: read to EOF
    while True:
        chunk = stream.read(min(65536, MAX_BODY + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_BODY:
            return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json(start_response, status: str, payload: dict, extra: tuple = ()) -> list[bytes]:
    body = json.dumps(payload).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra],
    )
    return [body]


def app(environ, start_response):
    """WSGI entry point: add the two numbers in the JSON request body."""
    if environ["REQUEST_METHOD"] != "GET":
        error = {"error": "use GET with a JSON body"}
        return _json(start_response, "405 Method Not Allowed", error, (("Allow", "GET"),))
    body = _read_body(environ)
    if body is None:
        return _json(start_response, "413 Content Too Large", {"error": "body too large"})
    try:
        payload = json.loads(body)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return _json(start_response, "400 Bad Request", {"error": USAGE})
    if not isinstance(payload, dict) or "val_a" not in payload or "val_b" not in payload:
        return _json(start_response, "400 Bad Request", {"error": USAGE})
    a, b = payload["val_a"], payload["val_b"]
    if not (_is_number(a) and _is_number(b)) or not math.isfinite(a + b):
        error = {"error": "val_a and val_b must be finite numbers"}
        return _json(start_response, "422 Unprocessable Content", error)
    return _json(start_response, "200 OK", {"sum": a + b})


application = app
