"""The smallest WSGI app: a 13-byte plain-text answer with its Content-Length."""

GREETING = b"Hello, World!"


def app(environ, start_response):
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(GREETING)))]
    )
    return [GREETING]


application = app
