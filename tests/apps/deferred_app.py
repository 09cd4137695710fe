"""An app for tests/test_deferred.py: ``/sleep`` blocks for a second, anything else answers
its path at once. Wrapped in wsgiref's validator."""

from __future__ import annotations

import time
from wsgiref.validate import validator


def _app(environ, start_response):  # type: ignore[no-untyped-def]
    path = environ.get("PATH_INFO", "")
    if path == "/sleep":
        time.sleep(1.0)
    body = path.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(_app)
