"""The app behind TLS (tests/test_tls.py)."""

import hashlib
import json
import os
from wsgiref.validate import validator


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        out = [hashlib.sha256(body).hexdigest().encode()]
    elif path == "/stream":
        out = (f"line {i}\n".encode() for i in range(1000))
    elif path == "/file":
        f = open(environ["QUERY_STRING"], "rb")  # noqa: SIM115 (closed by the server)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 1 << 16)
    else:
        keys = ("wsgi.url_scheme", "REMOTE_ADDR", "REMOTE_PORT", "SERVER_PORT")
        out = [json.dumps({**{k: environ[k] for k in keys}, "pid": os.getpid()}).encode()]
    headers = [("Content-Type", "text/plain")]
    if isinstance(out, list):
        headers.append(("Content-Length", str(sum(map(len, out)))))
    start_response("200 OK", headers)
    return out


app = validator(_app)
