"""The application gunicorn.conf.py serves: greets with $GREETING, which the config file's
``raw_env`` sets, and tells which process answered.

    curl http://127.0.0.1:8000/hello?name=you
"""

import os
from urllib.parse import parse_qs


def app(environ, start_response):
    if environ.get("PATH_INFO") != "/hello":
        body = b"Not found; try /hello?name=you\n"
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]
    name = parse_qs(environ.get("QUERY_STRING", "")).get("name", ["world"])[0]
    greeting = os.environ.get("GREETING", "(no GREETING)")
    body = f"{greeting}, {name}! (pid={os.getpid()})\n".encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
