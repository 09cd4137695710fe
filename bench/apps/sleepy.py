"""An app that blocks for 10 ms per request, like a database call: measures how many requests
a server keeps in flight while the app waits (ideal: threads x 100 req/s)."""

import time

DELAY = 0.010


def app(environ, start_response):
    time.sleep(DELAY)
    body = b"slept"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
