"""Hello world with no framework at all: what each framework app boils down to.

Run from the repository root::

    ferrule --chdir examples/hello wsgiapp:app
    curl http://127.0.0.1:8000/hello
"""


def app(environ, start_response):
    if environ.get("PATH_INFO") != "/hello":
        body = b"Not found; try /hello\n"
        status = "404 Not Found"
    else:
        body = b"Hello, world! (plain WSGI)\n"
        status = "200 OK"
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
