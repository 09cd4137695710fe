"""An app for tests/test_body_wait.py: notes when it is called and digests the body.

Each call writes ``CALLED <query> <time.monotonic()>`` to the error log before reading its
input (CLOCK_MONOTONIC is shared by every process on the machine, so a test can compare it
with its own clock). The answer is ``<called-at> <length> <sha256>`` of the body, read in
64 KiB pieces as most frameworks do. Wrapped in wsgiref's validator.
"""

from __future__ import annotations

import time
from wsgiref.validate import validator

from pep_input import digest


def _app(environ, start_response):  # type: ignore[no-untyped-def]
    called = time.monotonic()
    errors = environ["wsgi.errors"]
    errors.write(f"CALLED {environ.get('QUERY_STRING', '')} {called:.6f}\n")
    errors.flush()
    n, sha256, _ = digest(environ["wsgi.input"])
    body = f"{called:.6f} {n} {sha256}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(_app)
