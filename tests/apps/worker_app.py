"""An app for the worker-process tests: answers with its pid; `?S` makes it sleep S seconds.
`/drip?S` streams a block every 0.1 s for S seconds instead; `/drip-write?S` does the same
through the `write()` callable (a legacy app), inside one call of the app.

Each request writes "worker_app: request started" to wsgi.errors first, so a test can wait
until requests are inside the app.
"""

import os
import time


def app(environ, start_response):
    environ["wsgi.errors"].write("worker_app: request started\n")
    environ["wsgi.errors"].flush()
    seconds = float(environ.get("QUERY_STRING") or 0)
    if environ["PATH_INFO"] == "/drip":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return drip(seconds)
    if environ["PATH_INFO"] == "/drip-write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.1)
            write(b"drop\n")
        return [f"pid={os.getpid()}".encode()]
    time.sleep(seconds)
    body = f"pid={os.getpid()} multiprocess={environ['wsgi.multiprocess']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def drip(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
        yield b"drop\n"
    yield f"pid={os.getpid()}".encode()
