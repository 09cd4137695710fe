"""Answers with what the server says about the client (proxy tests)."""

import json
from wsgiref.validate import validator


def _app(environ, start_response):
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_X_FORWARDED_FOR")
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


app = validator(_app)
