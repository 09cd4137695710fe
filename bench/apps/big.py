"""Large bodies: GET / answers 64 KiB; POST /upload reads the whole body in 64 KiB reads and
answers its size; GET /stream answers 16 chunks of 4 KiB from a generator (no length)."""

BODY = b"x" * (64 * 1024)
READ_SIZE = 64 * 1024


def _plain(start_response, body, content_type="text/plain"):
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _upload(environ, start_response):
    stream = environ["wsgi.input"]
    total = 0
    chunk = stream.read(READ_SIZE)
    while chunk:
        total += len(chunk)
        chunk = stream.read(READ_SIZE)
    return _plain(start_response, str(total).encode())


def _stream(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (b"y" * 4096 for _ in range(16))


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/upload":
        return _upload(environ, start_response)
    if path == "/stream":
        return _stream(start_response)
    return _plain(start_response, BODY, "application/octet-stream")
