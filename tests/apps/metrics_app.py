"""An app for the metrics tests: `/` answers 200, `/missing` 404, `/slow?S` sleeps S seconds
(after writing "metrics_app: slow request started" to wsgi.errors), `/boom` raises (500)."""

import os
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    environ["wsgi.input"].read()
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not here\n"]
    if path == "/boom":
        raise RuntimeError("boom (expected by the metrics tests)")
    if path == "/slow":
        environ["wsgi.errors"].write("metrics_app: slow request started\n")
        environ["wsgi.errors"].flush()
        time.sleep(float(environ.get("QUERY_STRING") or 1))
    body = f"pid={os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
