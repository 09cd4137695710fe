"""PyDev's request and response objects, so views never touch the WSGI environ directly."""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs

#: Request bodies larger than this are not read (the view sees an empty body).
MAX_BODY = 1024 * 1024


class Request:
    """One HTTP request: method, path, query parameters, headers and body."""

    def __init__(self, environ: dict, settings=None):
        self.environ = environ
        self.settings = settings
        self.method: str = environ["REQUEST_METHOD"]
        self.path: str = environ.get("PATH_INFO") or "/"
        self.query: dict[str, list[str]] = parse_qs(environ.get("QUERY_STRING", ""))
        self.headers: dict[str, str] = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                self.headers[key.replace("_", "-").title()] = environ[key]
        self._body: bytes | None = None

    def param(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter `name`."""
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def body(self) -> bytes:
        if self._body is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            stream = self.environ["wsgi.input"]
            self._body = stream.read(length) if 0 < length <= MAX_BODY else b""
        return self._body


class Response:
    """What a view returns. The body is text; PyDev encodes it as UTF-8."""

    def __init__(self, body: str = "", status: int = 200, content_type: str = "text/plain"):
        self.status_code = status
        self.headers: list[tuple[str, str]] = []
        self.content_type = content_type
        self.body = body

    @property
    def status(self) -> str:
        """The WSGI status line, e.g. ``"200 OK"``."""
        try:
            return f"{self.status_code} {HTTPStatus(self.status_code).phrase}"
        except ValueError:
            return f"{self.status_code} Unknown"

    def add_header(self, name: str, value: str) -> None:
        self.headers.append((name, value))

    def set_body(self, body: str) -> None:
        self.body = body
