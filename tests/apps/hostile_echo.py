"""An app that answers every request with what it saw, as JSON: the request line's parts,
every header key of the environ and the whole body. For the corpus and smuggling tests.

Wrapped in wsgiref's validator and werkzeug's LintMiddleware (see hostile_lint.py); each
request is noted in the error log as ``ECHO <method> <RAW_URI>`` so a test can tell
whether a smuggled request ever reached the app.
"""

from __future__ import annotations

import json

from hostile_lint import linted


def _echo(environ, start_response):  # type: ignore[no-untyped-def]
    stream = environ["wsgi.input"]
    chunks = []
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
    body = b"".join(chunks)
    keys = [k for k in environ if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")]
    out = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "protocol": environ["SERVER_PROTOCOL"],
        "raw_uri": environ.get("RAW_URI", ""),
        "headers": {k: environ[k] for k in sorted(keys)},
        "body": body.decode("latin-1"),
    }
    environ["wsgi.errors"].write(f"ECHO {environ['REQUEST_METHOD']} {out['raw_uri']}\n")
    data = json.dumps(out).encode("utf-8")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


app = linted(_echo)
