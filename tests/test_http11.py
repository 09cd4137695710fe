"""HTTP/1.1 message handling of the real server, black-box, by RFC 9112 (and RFC 9110 where
RFC 9112 defers to it).

Every test talks to a running `ferrule` over raw sockets (http.client where natural). The apps
are in tests/apps/h11_apps.py: `h11_apps:app` (wrapped in wsgiref's validator) routes on the
path; `h11_apps:raw` is not validated and hands the server bodies for 204/304.

`Conn.response()` reads exactly one response (status line, headers, then the body framed by
Content-Length, chunked coding or connection close), keeping any bytes after it, so pipelined
responses are read one by one, in order.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import re
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ServerProcess, ferrule_env

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 5.0  # every socket operation
IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT$"
)


# --- client helpers ------------------------------------------------------------------------


@dataclass
class Resp:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    framing: str = "none"  # "length", "chunked", "close" or "none"
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def has_token(self, name: str, token: str) -> bool:
        value = self.header(name) or ""
        return token.lower() in [t.strip().lower() for t in value.split(",")]

    def json(self) -> dict:
        return json.loads(self.body)


class Conn:
    """One client connection with its own read buffer (bytes after a response are kept)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buf = b""

    @classmethod
    def to(cls, srv: ServerProcess) -> Conn:
        return cls(srv.connect(TIMEOUT))

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def readline(self) -> bytes:
        """One line including its LF; raises EOFError if the connection ends first."""
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("response line longer than 1 MiB")
            if not self._fill():
                raise EOFError(f"connection closed mid-line; got {self.buf!r}")
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def _crlf_line(self) -> str:
        line = self.readline()
        assert line.endswith(b"\r\n"), f"response line not ended by CRLF: {line!r}"
        return line[:-2].decode("latin-1")

    def _fields(self) -> list[tuple[str, str]]:
        fields = []
        while True:
            line = self._crlf_line()
            if line == "":
                return fields
            name, colon, value = line.partition(":")
            assert colon and name and name == name.strip(), f"bad response field line {line!r}"
            fields.append((name, value.strip(" \t")))

    def response(self, method: str = "GET") -> Resp:
        """Read exactly one response (a 1xx counts as one) to a request with `method`."""
        status_line = self._crlf_line()
        m = re.fullmatch(r"(HTTP/1\.[01]) (\d{3}) ?(.*)", status_line)
        assert m, f"bad status line {status_line!r}"
        resp = Resp(m.group(1), int(m.group(2)), m.group(3), self._fields())
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        if te is not None:
            assert te.lower().replace(" ", "") == "chunked", f"unexpected Transfer-Encoding {te}"
            assert cl is None, "response has both Content-Length and Transfer-Encoding"
            resp.framing = "chunked"
            body = []
            while True:
                size_line = self._crlf_line()
                size = int(size_line.split(";")[0].strip(), 16)
                if size == 0:
                    resp.trailers = self._fields()
                    break
                body.append(self.read_exact(size))
                assert self.read_exact(2) == b"\r\n", "chunk data not followed by CRLF"
            resp.body = b"".join(body)
        elif cl is not None:
            assert re.fullmatch(r"\d+", cl), f"bad response Content-Length {cl!r}"
            resp.framing = "length"
            resp.body = self.read_exact(int(cl))
        else:
            resp.framing = "close"
            resp.body = self.read_to_close()
        return resp

    def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """Wait up to `timeout` for the server to close: True on EOF/RST, False on timeout.
        Extra bytes from the server fail the test (nothing may follow the response)."""
        assert self.buf == b"", f"unexpected bytes after the response: {self.buf!r}"
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            self.sock.settimeout(TIMEOUT)
        assert data == b"", f"unexpected bytes after the response: {data!r}"
        return True

    def silent_for(self, seconds: float) -> bool:
        """True if the server sends nothing (and does not close) for `seconds`."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(65536, socket.MSG_PEEK)  # data or EOF: not silent
        except (socket.timeout, TimeoutError):
            return True
        finally:
            self.sock.settimeout(TIMEOUT)
        return False


def req(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | tuple = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: bool = True,
    length: bool = True,
) -> bytes:
    """A request's bytes; adds Host (unless host=False) and, for a body, Content-Length
    (unless length=False or `headers` already frame it)."""
    lines = [f"{method} {target} {version}"]
    if host:
        lines.append("Host: test.example")
    lines += [f"{k}: {v}" for k, v in headers]
    framed = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)
    if body and length and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, size: int = 7, ext: bool = False, trailers: str = "") -> bytes:
    """`body` in chunked coding, `size` bytes a chunk; optional chunk extensions/trailers."""
    out = []
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        extension = f';name{i}="quoted value";flag' if ext else ""
        out.append(f"{len(piece):x}{extension}\r\n".encode() + piece + b"\r\n")
    out.append(b"0" + (b";last=1" if ext else b"") + b"\r\n" + trailers.encode() + b"\r\n")
    return b"".join(out)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def exchange(srv: ServerProcess, data: bytes, method: str = "GET") -> Resp:
    """Send `data` on a fresh connection and read one response."""
    with Conn.to(srv) as c:
        c.send(data)
        return c.response(method)


def assert_rejected(srv: ServerProcess, data: bytes, status: int | tuple[int, ...]) -> Resp:
    """`data` must get a `status` response (one of them, for a tuple) with Connection: close,
    then the server closes."""
    allowed = status if isinstance(status, tuple) else (status,)
    with Conn.to(srv) as c:
        c.send(data)
        try:
            r = c.response()
        except EOFError as e:
            raise AssertionError(f"server closed without a {status} response to {data!r}") from e
        except (socket.timeout, TimeoutError) as e:
            raise AssertionError(f"no response within {TIMEOUT}s to {data[:200]!r}") from e
        assert r.status in allowed, f"{data[:200]!r} -> {r.status} {r.reason}, expected {status}"
        assert r.has_token("Connection", "close"), f"no Connection: close on {r.status}"
        assert c.closed_by_server(), f"server kept the connection open after {r.status}"
        return r


def start(tmp_path_factory, *args: str) -> ServerProcess:
    s = ServerProcess(
        ["--bind", "127.0.0.1:0", *args], tmp_path_factory.mktemp("h11"), ferrule_env()
    )
    s.wait_ready()
    return s


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """`h11_apps:app` with default settings."""
    s = start(tmp_path_factory, "h11_apps:app")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """`h11_apps:app` with small request limits."""
    s = start(
        tmp_path_factory,
        "--limit-request-line",
        "200",
        "--limit-request-fields",
        "10",
        "--limit-request-field-size",
        "100",
        "--limit-request-body",
        "100",
        "h11_apps:app",
    )
    yield s
    s.stop()


# --- persistence (RFC 9112 section 9.3) -------------------------------------------------------


def test_http11_keeps_alive_by_default(srv):
    with Conn.to(srv) as c:
        c.send(req(target="/first"))
        r1 = c.response()
        assert (r1.status, r1.body) == (200, b"/first")
        assert not r1.has_token("Connection", "close")
        c.send(req(target="/second"))
        r2 = c.response()
        assert (r2.status, r2.body) == (200, b"/second")
        assert r1.version == r2.version == "HTTP/1.1"


def test_http10_closes_after_response(srv):
    with Conn.to(srv) as c:
        c.send(req(target="/ten", version="HTTP/1.0", host=False))
        r = c.response()
        assert (r.status, r.body) == (200, b"/ten")
        assert not r.has_token("Connection", "keep-alive")
        assert c.closed_by_server(), "HTTP/1.0 connection without keep-alive stayed open"


def test_http10_keep_alive_on_request(srv):
    with Conn.to(srv) as c:
        c.send(req(target="/a", version="HTTP/1.0", headers=[("Connection", "keep-alive")]))
        r1 = c.response()
        assert (r1.status, r1.body) == (200, b"/a")
        assert r1.has_token("Connection", "keep-alive")
        c.send(req(target="/b", version="HTTP/1.0", headers=[("Connection", "Keep-Alive")]))
        r2 = c.response()
        assert (r2.status, r2.body) == (200, b"/b")
        assert r2.has_token("Connection", "keep-alive")
        c.send(req(target="/c", version="HTTP/1.0"))  # no keep-alive this time
        r3 = c.response()
        assert (r3.status, r3.body) == (200, b"/c")
        assert c.closed_by_server()


@pytest.mark.parametrize("value", ["close", "CLOSE", "keep-alive, close"])
def test_http11_connection_close(srv, value):
    with Conn.to(srv) as c:
        c.send(req(target="/bye", headers=[("Connection", value)]))
        r = c.response()
        assert (r.status, r.body) == (200, b"/bye")
        assert r.has_token("Connection", "close")
        assert c.closed_by_server()


def test_no_request_processed_after_connection_close(srv):
    """RFC 9112 9.6: after a request with "close" the server MUST NOT process further ones."""
    with Conn.to(srv) as c:
        c.send(req(target="/last", headers=[("Connection", "close")]) + req(target="/ignored"))
        r = c.response()
        assert (r.status, r.body) == (200, b"/last")
        assert r.has_token("Connection", "close")
        assert c.closed_by_server(), "a second response followed the Connection: close one"


def test_http_client_reuses_connection(srv):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/one")
        r1 = conn.getresponse()
        assert (r1.status, r1.read()) == (200, b"/one")
        sock = conn.sock
        conn.request("POST", "/echo", body=b"x" * 1000)
        r2 = conn.getresponse()
        assert r2.status == 200
        assert json.loads(r2.read())["sha256"] == sha(b"x" * 1000)
        assert conn.sock is sock, "http.client had to reconnect: keep-alive was not honoured"
    finally:
        conn.close()


# --- pipelining (RFC 9112 section 9.3.2) ------------------------------------------------------


def test_pipelined_gets_answered_in_order(srv):
    paths = [f"/p{i}" for i in range(5)]
    with Conn.to(srv) as c:
        c.send(b"".join(req(target=p) for p in paths))
        bodies = [c.response().body for _ in paths]
        assert bodies == [p.encode() for p in paths]


def test_pipelined_bodies_mixed_with_gets(srv):
    b1, b2, b3 = b"A" * 33, bytes(range(256)) * 3, b"chunky " * 20
    data = (
        req(target="/echo/1")
        + req("POST", "/echo/2", body=b1)
        + req("GET", "/plain")
        + req("PUT", "/echo/3", [("Transfer-Encoding", "chunked")], chunked(b2, 100))
        + req("HEAD", "/list")
        + req("POST", "/echo/4", [("Transfer-Encoding", "chunked")], chunked(b3, 9, ext=True))
        + req(target="/echo/5")
    )
    with Conn.to(srv) as c:
        c.send(data)
        r1 = c.response()
        r2 = c.response()
        r3 = c.response()
        r4 = c.response()
        r5 = c.response("HEAD")
        r6 = c.response()
        r7 = c.response()
    assert (r1.json()["path"], r1.json()["len"]) == ("/echo/1", 0)
    assert (r2.json()["path"], r2.json()["sha256"]) == ("/echo/2", sha(b1))
    assert r3.body == b"/plain"
    assert (r4.json()["path"], r4.json()["method"], r4.json()["sha256"]) == (
        "/echo/3",
        "PUT",
        sha(b2),
    )
    assert (r5.status, r5.body) == (200, b"")
    assert (r6.json()["path"], r6.json()["sha256"]) == ("/echo/4", sha(b3))
    assert r7.json()["path"] == "/echo/5"


def test_pipelined_order_kept_when_first_request_blocks(srv):
    with Conn.to(srv) as c:
        c.send(req(target="/sleep") + req(target="/quick") + req(target="/echo/x"))
        assert c.response().body == b"slept"
        assert c.response().body == b"/quick"
        assert c.response().json()["path"] == "/echo/x"


# --- request bodies (RFC 9112 sections 6 and 7) -----------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000, 64 * 1024, 300_000])
def test_content_length_body(srv, size):
    body = bytes((i * 7) % 251 for i in range(size))
    r = exchange(srv, req("POST", "/echo", [("Content-Length", str(size))], body, length=False))
    assert r.status == 200
    assert (r.json()["len"], r.json()["sha256"]) == (size, sha(body))


def test_chunked_body_with_extensions_and_trailers(srv):
    body = b"The quick brown fox jumps over the lazy dog. " * 50
    data = req(
        "POST",
        "/echo",
        [("Transfer-Encoding", "chunked"), ("Trailer", "X-Checksum")],
        chunked(body, 13, ext=True, trailers="X-Checksum: abc\r\nX-Other: 1\r\n"),
    )
    with Conn.to(srv) as c:
        c.send(data + req(target="/after"))
        r = c.response()
        assert r.status == 200
        assert (r.json()["len"], r.json()["sha256"]) == (len(body), sha(body))
        # the trailer section was consumed: the next request parses cleanly
        assert c.response().body == b"/after"


def test_chunked_body_large_chunks_and_uppercase_hex(srv):
    body = bytes(range(256)) * 1000
    pieces = [body[:70000], body[70000:70001], body[70001:]]
    enc = b"".join(f"{len(p):X}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
    r = exchange(srv, req("POST", "/echo", [("Transfer-Encoding", "chunked")], enc))
    assert r.status == 200
    assert (r.json()["len"], r.json()["sha256"]) == (len(body), sha(body))


@pytest.mark.parametrize("coding", ["length", "chunked"])
def test_body_trickled_in_small_pieces(srv, coding):
    body = b"0123456789abcdef" * 8
    if coding == "length":
        head, payload = req("POST", "/echo", [("Content-Length", str(len(body)))]), body
    else:
        head, payload = req("POST", "/echo", [("Transfer-Encoding", "chunked")]), chunked(body, 5)
    step = len(payload) // 12 + 1
    pieces = [payload[i : i + step] for i in range(0, len(payload), step)]
    assert b"".join(pieces) == payload
    with Conn.to(srv) as c:
        errors: list[BaseException] = []

        def sender() -> None:
            try:
                c.send(head[:10])
                time.sleep(0.02)
                c.send(head[10:])
                for piece in pieces:
                    time.sleep(0.03)
                    c.send(piece)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        r = c.response()
        t.join(TIMEOUT)
        assert not t.is_alive() and not errors, errors
        assert r.status == 200
        assert (r.json()["len"], r.json()["sha256"]) == (len(body), sha(body))


def test_get_with_body_is_passed_to_app(srv):
    body = b'{"hello": "get body"}'
    r = exchange(srv, req("GET", "/echo", body=body))
    assert (r.json()["method"], r.json()["sha256"]) == ("GET", sha(body))


def test_get_with_json_body_addition_example(start_server):
    s = start_server("--chdir", "examples/addition", "app:app", cwd=ROOT)
    body = json.dumps({"val_a": 2, "val_b": 3.5}).encode()
    with Conn.to(s) as c:
        c.send(req("GET", "/", [("Content-Type", "application/json")], body))
        r = c.response()
        assert (r.status, r.json()) == (200, {"sum": 5.5})
        enc = chunked(json.dumps({"val_a": 40, "val_b": 2}).encode(), 4)
        c.send(req("GET", "/", [("Transfer-Encoding", "chunked")], enc))
        r = c.response()
        assert (r.status, r.json()) == (200, {"sum": 42})
    conn = http.client.HTTPConnection(s.host, s.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/", body=b'{"val_a": 1, "val_b": 1}')
        r2 = conn.getresponse()
        assert (r2.status, json.loads(r2.read())) == (200, {"sum": 2})
    finally:
        conn.close()


# --- Expect: 100-continue (RFC 9110 section 10.1.1) -------------------------------------------


@pytest.mark.parametrize("coding", ["length", "chunked"])
def test_100_continue_then_body(srv, coding):
    body = b"expect me " * 100
    if coding == "length":
        headers, payload = [("Content-Length", str(len(body)))], body
    else:
        headers, payload = [("Transfer-Encoding", "chunked")], chunked(body, 64)
    with Conn.to(srv) as c:
        c.send(req("POST", "/echo", [*headers, ("Expect", "100-continue")]))
        interim = c.response()
        assert (interim.status, interim.version) == (100, "HTTP/1.1"), interim
        c.send(payload)
        r = c.response()
        assert r.status == 200
        assert (r.json()["len"], r.json()["sha256"]) == (len(body), sha(body))
        c.send(req(target="/next"))  # the connection is still usable
        assert c.response().body == b"/next"


def test_100_continue_sent_only_when_app_reads(srv):
    """/slowread sleeps 0.3 s before reading: the 100 must not come before that."""
    body = b"z" * 500
    with Conn.to(srv) as c:
        t0 = time.monotonic()
        c.send(req("POST", "/slowread", [("Content-Length", "500"), ("Expect", "100-continue")]))
        interim = c.response()
        waited = time.monotonic() - t0
        assert interim.status == 100
        assert waited >= 0.25, f"100 Continue sent {waited:.3f}s in, before the app read"
        c.send(body)
        r = c.response()
        assert (r.status, r.json()["sha256"]) == (200, sha(body))


def test_100_continue_not_sent_when_app_ignores_body(srv):
    with Conn.to(srv) as c:
        c.send(req("POST", "/nobody", [("Content-Length", "10"), ("Expect", "100-continue")]))
        r = c.response()
        assert r.status == 200, f"expected the final response directly, got {r.status}"
        assert r.body == b"no body read"
        if r.has_token("Connection", "close"):
            assert c.closed_by_server()
        else:
            # the server keeps reading: it must discard the 10 body bytes, then serve the next
            c.send(b"0123456789" + req(target="/after-expect"))
            try:
                r2 = c.response()
            except (EOFError, ConnectionResetError) as e:
                raise AssertionError(
                    "the final response did not say Connection: close, yet the server closed "
                    "instead of reading the body and serving the next request"
                ) from e
            assert (r2.status, r2.body) == (200, b"/after-expect")


def test_100_continue_ignored_for_http10(srv):
    """RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored."""
    with Conn.to(srv) as c:
        c.send(
            req(
                "POST",
                "/echo",
                [("Content-Length", "4"), ("Expect", "100-continue")],
                version="HTTP/1.0",
            )
        )
        got_nothing = c.silent_for(0.4)
        c.send(b"abcd")
        r = c.response()
        assert got_nothing, "server sent something to an HTTP/1.0 client before its body"
        assert (r.status, r.json()["sha256"]) == (200, sha(b"abcd"))


def test_http10_transfer_encoding_is_faulty_framing(srv):
    """RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing; the server
    MUST close the connection after processing it (even with Connection: keep-alive)."""
    data = req(
        "POST",
        "/echo",
        [("Connection", "keep-alive"), ("Transfer-Encoding", "chunked")],
        chunked(b"abc"),
        version="HTTP/1.0",
    )
    with Conn.to(srv) as c:
        c.send(data)
        r = c.response()
        assert r.status in (200, 400), r
        assert not r.has_token("Connection", "keep-alive")
        assert c.closed_by_server()


def test_identical_duplicate_content_length(srv):
    """RFC 9112 6.3 / RFC 9110 8.6: identical repeated Content-Length values are either
    rejected (400) or taken as one value; the app must never see a list like "5, 5"."""
    data = req("POST", "/echo", [("Content-Length", "5"), ("Content-Length", "5")], b"hello")
    with Conn.to(srv) as c:
        c.send(data)
        r = c.response()
        if r.status == 400:
            assert c.closed_by_server()
        else:
            assert r.status == 200, f"got {r.status} {r.reason}: {r.body[:200]!r}"
            assert (r.json()["content_length"], r.json()["sha256"]) == ("5", sha(b"hello"))


# --- request targets and leading empty lines (RFC 9112 sections 2.2 and 3.2) -------------


@pytest.mark.parametrize("scheme", ["http", "https", "HTTPS", "hTtP"])
def test_absolute_form_target(srv, scheme):
    """RFC 9112 3.2.2: a server MUST accept the absolute-form of request-target (and URI
    schemes are case-insensitive, RFC 3986 3.1; found by fuzzing)."""
    r = exchange(srv, req(target=f"{scheme}://test.example/echo/abs?q=1"))
    assert r.status == 200
    assert (r.json()["path"], r.json()["query"]) == ("/echo/abs", "q=1")


def test_leading_empty_line_ignored(srv):
    """RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request-line."""
    with Conn.to(srv) as c:
        c.send(req(target="/one") + b"\r\n" + req(target="/two"))
        assert c.response().body == b"/one"
        assert c.response().body == b"/two"


# --- HEAD (RFC 9110 section 9.3.2) ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/list", "/cl", "/echo"])
def test_head_has_get_headers_and_no_body(srv, path):
    with Conn.to(srv) as c:
        c.send(req("GET", path) + req("HEAD", path) + req("GET", "/after-head"))
        g = c.response()
        h = c.response("HEAD")
        nxt = c.response()
    assert g.status == h.status == 200
    skip = {"date"}

    def norm(r: Resp) -> list[tuple[str, str]]:
        return sorted((k.lower(), v) for k, v in r.headers if k.lower() not in skip)

    if path == "/echo":  # the JSON echoes the method, so only the length may differ
        assert h.header("Content-Length") is not None
    else:
        assert norm(h) == norm(g)
        assert h.header("Content-Length") == str(len(g.body))
    assert (nxt.status, nxt.body) == (200, b"/after-head"), "bytes leaked after a HEAD response"


def test_head_of_streamed_body_sends_no_body(srv):
    with Conn.to(srv) as c:
        c.send(req("HEAD", "/gen") + req("GET", "/after-head"))
        h = c.response("HEAD")
        assert h.status == 200
        nxt = c.response()
        assert (nxt.status, nxt.body) == (200, b"/after-head"), "chunk bytes after a HEAD"


# --- response framing (RFC 9112 section 6) ----------------------------------------------------


def test_app_content_length_used_as_given(srv):
    r = exchange(srv, req(target="/cl"))
    assert (r.framing, r.header("Content-Length"), r.body) == ("length", "11", b"hello world")
    assert r.header("Transfer-Encoding") is None


def test_single_chunk_list_gets_computed_length(srv):
    r = exchange(srv, req(target="/list"))
    assert (r.framing, r.header("Content-Length"), r.body) == ("length", "14", b"one chunk body")


def test_generator_body_chunked_on_http11(srv):
    with Conn.to(srv) as c:
        c.send(req(target="/gen") + req(target="/after-gen"))
        r = c.response()
        assert r.framing == "chunked"
        assert r.header("Content-Length") is None
        assert r.body == b"alpha-beta-gamma"
        assert c.response().body == b"/after-gen"


@pytest.mark.parametrize("keep_alive", [False, True])
def test_generator_body_close_delimited_on_http10(srv, keep_alive):
    headers = [("Connection", "keep-alive")] if keep_alive else []
    with Conn.to(srv) as c:
        c.send(req(target="/gen", headers=headers, version="HTTP/1.0"))
        r = c.response()
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        assert r.header("Transfer-Encoding") is None, "chunked coding sent to an HTTP/1.0 client"
        assert r.header("Content-Length") is None
        assert r.framing == "close"
        assert r.body == b"alpha-beta-gamma"
        assert not r.has_token("Connection", "keep-alive")


@pytest.mark.parametrize("app", ["h11_apps:app", "h11_apps:raw"])
def test_204_and_304_have_no_body(start_server, app):
    s = start_server(app)
    with Conn.to(s) as c:
        c.send(req(target="/204") + req(target="/304") + req(target="/after"))
        r204 = c.response()
        r304 = c.response()
        nxt = c.response()
    assert r204.status == 204 and r304.status == 304
    assert r204.header("Content-Length") is None, "Content-Length sent in a 204"
    assert r204.header("Transfer-Encoding") is None and r304.header("Transfer-Encoding") is None
    assert (nxt.status, nxt.body) == (200, b"/after"), "body bytes sent after a 204/304"


def test_date_and_server_headers(srv):
    for data in (req(target="/list"), req(target="/gen"), b"GET /x HTTP/1.1\r\n\r\n"):
        r = exchange(srv, data)
        date = r.header("Date")
        assert date is not None, f"no Date on a {r.status}"
        assert IMF_FIXDATE.match(date), f"Date is not an IMF-fixdate: {date!r}"
        ts = email.utils.parsedate_to_datetime(date).timestamp()
        assert abs(ts - time.time()) < 60
        assert r.header("Server"), f"no Server header on a {r.status}"


# --- malformed requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"this is not http\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
    ],
    ids=["words", "method-only", "extra-token", "double-space", "tls-hello"],
)
def test_garbage_request_line_400(srv, data):
    assert_rejected(srv, data, 400)


def test_request_line_limit(limited):
    assert exchange(limited, req(target="/" + "a" * 150)).status == 200
    assert_rejected(limited, req(target="/" + "a" * 300), 414)


def test_default_request_line_limit_boundary(srv):
    fixed = len("GET  HTTP/1.1")
    ok_target = "/" + "b" * (8190 - fixed - 1)
    line = f"GET {ok_target} HTTP/1.1"
    assert len(line) == 8190
    r = exchange(srv, req(target=ok_target))
    assert r.status == 200, f"an 8190-byte request line got {r.status}"
    assert len(r.body) == len(ok_target)
    assert_rejected(srv, req(target=ok_target + "b"), 414)  # 8191 bytes
    assert_rejected(srv, req(target="/" + "c" * 20000), 414)


def test_too_many_header_fields(limited):
    nine = [(f"X-H{i}", "v") for i in range(9)]  # + Host = 10 fields, the limit
    assert exchange(limited, req(target="/f", headers=nine)).status == 200
    assert_rejected(limited, req(target="/f", headers=[*nine, ("X-H9", "v")]), 431)


def test_default_header_field_count_limit(srv):
    assert exchange(srv, req(headers=[(f"X-H{i}", "v") for i in range(99)])).status == 200
    assert_rejected(srv, req(headers=[(f"X-H{i}", "v") for i in range(150)]), 431)


def test_header_field_too_large(limited):
    assert exchange(limited, req(headers=[("X-Short", "s" * 50)])).status == 200
    assert_rejected(limited, req(headers=[("X-Long", "l" * 300)]), 431)
    assert_rejected(limited, req(headers=[("X-" + "n" * 300, "v")]), 431)


def test_body_limit_content_length(limited):
    r = exchange(limited, req("POST", "/echo", body=b"k" * 100))
    assert (r.status, r.json()["len"]) == (200, 100)
    assert_rejected(limited, req("POST", "/echo", body=b"k" * 101), 413)
    # declared too large, nothing sent yet: refused from the head alone, without a hang
    assert_rejected(limited, req("POST", "/echo", [("Content-Length", "1000000")]), 413)


def test_body_limit_chunked(limited):
    te = [("Transfer-Encoding", "chunked")]
    r = exchange(limited, req("POST", "/echo", te, chunked(b"q" * 90)))
    assert (r.status, r.json()["len"]) == (200, 90)
    big = chunked(b"q" * 150, 50)
    assert_rejected(limited, req("POST", "/echo", te, big), 413)


@pytest.mark.parametrize(
    "headers,status",
    [
        ([("Transfer-Encoding", "gzip, chunked")], 501),
        ([("Transfer-Encoding", "chunked"), ("Content-Length", "5")], 400),
        ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], 400),
        ([("Content-Length", "5"), ("Content-Length", "6")], 400),
        ([("Content-Length", "+5")], 400),
        ([("Content-Length", "5, 5")], 400),
        ([("Content-Length", "abc")], 400),
        ([("Content-Length", "-5")], 400),
        ([("Content-Length", "0x5")], 400),
        ([("Transfer-Encoding", "chunked, chunked")], 400),
        ([("Transfer-Encoding", "chunked, gzip")], (400, 501)),
    ],
    ids=[
        "te-gzip-chunked",
        "te-and-cl",
        "cl-and-te",
        "two-cl",
        "cl-plus",
        "cl-list",
        "cl-abc",
        "cl-negative",
        "cl-hex",
        "te-chunked-twice",
        "te-chunked-not-last",
    ],
)
def test_bad_framing_headers(srv, headers, status):
    body = b"5\r\nhello\r\n0\r\n\r\n" if any(k == "Transfer-Encoding" for k, _ in headers) else b""
    assert_rejected(srv, req("POST", "/echo", headers, body or b"hello", length=False), status)


@pytest.mark.parametrize(
    "payload",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ],
    ids=[
        "bad-hex",
        "bare-lf-size",
        "bare-lf-data",
        "no-crlf-after-data",
        "negative",
        "empty",
        "overflow",
    ],
)
def test_bad_chunked_framing_400(srv, payload):
    assert_rejected(srv, req("POST", "/echo", [("Transfer-Encoding", "chunked")], payload), 400)


def test_bad_chunked_framing_caught_by_app_still_closes(srv):
    """An app that swallows the body error answers 200, but the connection cannot be reused
    (its framing is lost): the response must say Connection: close, and the server close."""
    bad = req("POST", "/catchbody", [("Transfer-Encoding", "chunked")], b"5\r\nhelloXX0\r\n\r\n")
    with Conn.to(srv) as c:
        c.send(bad)
        r = c.response()
        assert (r.status, r.body) == (200, b"caught")
        assert r.has_token("Connection", "close")
        assert c.closed_by_server()


def test_refusal_reaches_a_client_still_sending(limited):
    """A 413 for a body still on its way must reach a plain client that sends its whole
    body before reading. Closing at once, with the body unread, makes the kernel answer
    with RST and the client's send fails before it ever sees the 413: the server must shut
    down its side and discard what is still coming (lingering close). 12 MiB is more than
    the loopback socket buffers hold, so the body is still in flight when the 413 goes out."""
    for _ in range(3):
        conn = http.client.HTTPConnection(limited.host, limited.port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/echo", body=b"x" * (12 << 20))
            r = conn.getresponse()
            assert r.status == 413
            assert r.getheader("Connection") == "close"
            r.read()
        finally:
            conn.close()


@pytest.mark.parametrize(
    "data",
    [
        b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ],
    ids=[
        "nul-target",
        "bare-cr-value",
        "obs-fold-space",
        "obs-fold-tab",
        "nul-value",
        "space-before-colon",
        "no-colon",
        "no-host",
        "two-hosts",
    ],
)
def test_bad_head_400(srv, data):
    assert_rejected(srv, data, 400)


def test_http10_without_host_is_fine(srv):
    r = exchange(srv, b"GET /old HTTP/1.0\r\n\r\n")
    assert (r.status, r.body) == (200, b"/old")


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/3.0"])
def test_unsupported_major_version_505(srv, version):
    assert_rejected(srv, req(version=version), 505)


def test_unsupported_expectation_417(srv):
    assert_rejected(srv, req("POST", "/echo", [("Expect", "something-else")], b"abc"), 417)


def test_server_survives_malformed_input(srv):
    for data in (b"\r\n\r\n\x00\x01garbage", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \xff\r\n\r\n"):
        with Conn.to(srv) as c:
            c.send(data)
            try:
                c.read_to_close()
            except (ConnectionResetError, socket.timeout, TimeoutError):
                pass
    assert exchange(srv, req(target="/alive")).body == b"/alive"


# --- header names with underscores ------------------------------------------------------------


def test_underscore_header_names_dropped(srv):
    r = exchange(srv, req("GET", "/echo", [("X_Foo", "1")]))
    assert "HTTP_X_FOO" not in r.json()["headers"]
    r = exchange(srv, req("GET", "/echo", [("X-Foo", "2")]))
    assert r.json()["headers"].get("HTTP_X_FOO") == "2"
    # the smuggling case: an underscore name must never shadow or join the real header
    for order in ([("X-Foo", "good"), ("X_Foo", "evil")], [("X_Foo", "evil"), ("X-Foo", "good")]):
        r = exchange(srv, req("GET", "/echo", order))
        assert r.json()["headers"].get("HTTP_X_FOO") == "good"


# --- clients going away -----------------------------------------------------------------------


def test_clients_disconnecting_do_not_break_server(srv):
    # half-close right after a complete request: the request is still answered
    with Conn.to(srv) as c:
        c.send(req(target="/half"))
        c.sock.shutdown(socket.SHUT_WR)
        r = c.response()
        assert (r.status, r.body) == (200, b"/half")
    # disconnect while the app is running, and while the server waits for the body
    for data in (req(target="/sleep"), req("POST", "/echo", [("Content-Length", "1000")], b"x")):
        s = srv.connect(TIMEOUT)
        s.sendall(data)
        s.close()
    # reset (RST) right after a request
    s = srv.connect(TIMEOUT)
    s.sendall(req(target="/sleep"))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    for path in ("/new-client", "/sleep"):
        r = exchange(srv, req(target=path))
        assert r.status == 200
    assert srv.proc.poll() is None, srv.log
    assert "panic" not in srv.log.lower(), srv.log


# --- timeouts ---------------------------------------------------------------------------------


def test_idle_keep_alive_timeout(start_server):
    s = start_server("--keep-alive", "1", "h11_apps:app")
    with Conn.to(s) as c:
        c.send(req(target="/idle"))
        assert c.response().body == b"/idle"
        t0 = time.monotonic()
        assert c.closed_by_server(timeout=3.0), "idle connection not closed within 3 s"
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.5, f"closed after {elapsed:.2f}s, before the keep-alive timeout"


def test_header_timeout(start_server):
    s = start_server("--header-timeout", "1", "h11_apps:app")
    with Conn.to(s) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        c.sock.settimeout(3.0)
        try:
            data = c.read_to_close()
        except (socket.timeout, TimeoutError):
            pytest.fail("a partial request head was kept open for more than 3 s")
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - t0
        assert elapsed < 3.0
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data[:200]


# --- concurrency ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def threaded(tmp_path_factory):
    s = start(tmp_path_factory, "--threads", "4", "h11_apps:app")
    yield s
    s.stop()


def test_blocking_requests_run_concurrently(threaded):
    def one(_: int) -> bytes:
        return exchange(threaded, req(target="/sleep")).body

    exchange(threaded, req(target="/warm"))
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(one, range(4)))
    elapsed = time.monotonic() - t0
    assert bodies == [b"slept"] * 4
    assert elapsed < 1.5, f"4 x 0.5 s requests on 4 threads took {elapsed:.2f}s"


def test_fast_request_not_blocked_by_slow_one(threaded):
    with Conn.to(threaded) as slow:
        slow.send(req(target="/sleep"))
        t0 = time.monotonic()
        with Conn.to(threaded) as fast:
            fast.send(req(target="/fast"))
            r = fast.response()
        elapsed = time.monotonic() - t0
        assert r.body == b"/fast"
        assert elapsed < 0.3, f"a fast request waited {elapsed:.2f}s behind a sleeping one"
        assert slow.response().body == b"slept"
