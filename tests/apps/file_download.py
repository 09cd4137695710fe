"""Downloads through `wsgi.file_wrapper` (sent with sendfile by the core), for the
slow-reader tests in tests/test_slow_clients.py.

    /file   the file named by $FERRULE_TEST_FILE, whole, with its Content-Length; the
            wrapped file notes its close() in the error log as ``FILE-CLOSED``
    other   200 with the path as the body

Not wrapped in wsgiref's validator: its iterator wrapper would hide the file wrapper, and
the core would read the file through Python instead of sending it with sendfile.
"""

from __future__ import annotations

import os


class NotedFile:
    """A file that notes its close() in the error log."""

    def __init__(self, path: str, errors) -> None:  # type: ignore[no-untyped-def]
        self.f = open(path, "rb")  # noqa: SIM115 (closed through the wrapper)
        self.errors = errors

    def fileno(self) -> int:
        return self.f.fileno()

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, pos: int) -> int:
        return self.f.seek(pos)

    def read(self, n: int) -> bytes:
        return self.f.read(n)

    def close(self) -> None:
        self.f.close()
        self.errors.write("FILE-CLOSED\n")
        self.errors.flush()


def app(environ, start_response):  # type: ignore[no-untyped-def]
    path = environ.get("PATH_INFO", "")
    if path == "/file":
        name = os.environ["FERRULE_TEST_FILE"]
        size = os.path.getsize(name)
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
        )
        return environ["wsgi.file_wrapper"](NotedFile(name, environ["wsgi.errors"]), 65536)
    body = path.encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
