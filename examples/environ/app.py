"""Show what the server hands a WSGI application: every environ key, then the body length.

The response is text/plain, one ``KEY = repr(value)`` line per key in sorted order (CGI
variables and ``HTTP_*`` headers first, then the ``wsgi.*`` keys), followed by a line giving
the size of the request body, which the app reads to the end. Run from the repository root::

    ferrule --chdir examples/environ app:app
    curl -d 'some body' 'http://127.0.0.1:8000/any/path?x=1'
"""

from __future__ import annotations

CHUNK = 64 * 1024


def body_length(environ: dict) -> int:
    """Read the request body to its end and return its size, without keeping it in memory."""
    stream = environ["wsgi.input"]
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    # Without a Content-Length there is only a body to read if the server says the stream ends
    # with it (a chunked request); otherwise reading could block on the open connection.
    until_eof = remaining == 0 and bool(environ.get("wsgi.input_terminated"))
    total = 0
    while remaining > 0 or until_eof:
        chunk = stream.read(CHUNK if until_eof else min(CHUNK, remaining))
        if not chunk:
            break
        total += len(chunk)
        remaining -= len(chunk)
    return total


def render(environ: dict, length: int) -> bytes:
    lines = [f"{key} = {environ[key]!r}" for key in sorted(environ)]
    lines += ["", f"request body: {length} bytes", ""]
    return "\n".join(lines).encode("utf-8", "backslashreplace")


def app(environ, start_response):
    body = render(environ, body_length(environ))
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


application = app
