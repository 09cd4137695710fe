"""An app whose requests take as long as the query string says (seconds), for stop tests."""

import time
from wsgiref.validate import validator


@validator
def app(environ, start_response):
    seconds = float(environ.get("QUERY_STRING") or 0)
    environ["wsgi.errors"].write("slow_app: request started\n")
    time.sleep(seconds)
    body = f"slept {seconds}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
