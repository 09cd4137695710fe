"""An app for tests/test_gunicorn_conf.py: each path returns its body in a different form,
so the pre_request/post_request wrapper is checked against every kind of response.

/list      a list of bytes            /gen    a generator (closed by the server)
/file      wsgi.file_wrapper (sendfile)  /write  the write() callable, then a list
/raise     raises before start_response  /env    the variables raw_env sets, as JSON
"""

import json
import os

FILE_BODY = b"0123456789" * 1000


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/raise":
        raise RuntimeError("gconf_app: boom")
    headers = [("Content-Type", "text/plain")]
    if path == "/gen":
        start_response("200 OK", headers)
        return (part for part in (b"gen-", b"erated"))
    if path == "/file":
        filename = os.environ["GCONF_FILE"]
        start_response("200 OK", [*headers, ("Content-Length", str(os.path.getsize(filename)))])
        return environ["wsgi.file_wrapper"](open(filename, "rb"))
    if path == "/write":
        write = start_response("200 OK", [*headers, ("Content-Length", "10")])
        write(b"writ")
        return [b"ten-b", b"y"]
    if path == "/env":
        names = ("GCONF_A", "GCONF_B", "GCONF_EMPTY", "GCONF_EQ")
        body = json.dumps({name: os.environ.get(name) for name in names}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    start_response("200 OK", headers)
    return [b"li", b"st"]
