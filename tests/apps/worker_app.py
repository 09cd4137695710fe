"""An app for the worker-process tests: answers with its pid; `?S` makes it sleep S seconds.

Each request writes "worker_app: request started" to wsgi.errors first, so a test can wait
until requests are inside the app.
"""

import os
import time


def app(environ, start_response):
    environ["wsgi.errors"].write("worker_app: request started\n")
    environ["wsgi.errors"].flush()
    seconds = float(environ.get("QUERY_STRING") or 0)
    time.sleep(seconds)
    body = f"pid={os.getpid()} multiprocess={environ['wsgi.multiprocess']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
