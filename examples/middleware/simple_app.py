"""The plain WSGI application the middleware example wraps.

To serve it on its own, without the middleware::

    ferrule --chdir examples/middleware simple_app:simple_app
"""


def simple_app(environ, start_response):
    # PEP 3333 hands PATH_INFO over as latin-1 text; encoding it back gives the raw path bytes.
    path = (environ.get("PATH_INFO") or "/").encode("latin-1")
    body = b"Hello, World!\nYou asked for " + path + b"\n"
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


app = simple_app
