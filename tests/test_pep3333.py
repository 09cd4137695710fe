"""PEP 3333 conformance of the real server, end to end.

Most tests share one server running `pep_apps:router` (the app is picked by the `X-Pep-App`
request header; see tests/apps/pep_apps.py) and find their own log lines by a per-test
token `t`. Tests that need other settings (--root-path, --threads) or a clean memory
baseline start their own server with the `start_server` fixture.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import random
import re
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from conftest import APPS, ServerProcess, ferrule_env

TIMEOUT = 10.0
LATIN1_CAFE = "caf\u00e9".encode().decode("latin-1")  # 'cafÃ©'

_spec = importlib.util.spec_from_file_location("pep_input", APPS / "pep_input.py")
assert _spec is not None and _spec.loader is not None
pep_input = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pep_input)


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """One server for the module: `pep_apps:router` with the default settings."""
    s = ServerProcess(
        ["--bind", "127.0.0.1:0", "pep_apps:router"],
        tmp_path_factory.mktemp("pep_srv"),
        ferrule_env(),
    )
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture
def t():
    """A token unique to the test, for finding its lines in the shared log."""
    return uuid.uuid4().hex[:12]


@dataclass
class Resp:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool  # the body ended by its framing (not cut short by EOF)
    raw_head: bytes = b""
    framing: str = ""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def json(self):
        return json.loads(self.body)


@dataclass
class Raw:
    """A raw HTTP/1.x client connection over one socket."""

    srv: ServerProcess
    timeout: float = TIMEOUT
    sock: socket.socket = field(init=False)

    def __post_init__(self):
        self.sock = self.srv.connect(self.timeout)
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def head_bytes(
        self,
        app: str,
        target: str = "/",
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        version: str = "HTTP/1.1",
        host: bool = True,
    ) -> bytes:
        lines = [f"{method} {target} {version}"]
        if host:
            lines.append(f"Host: {self.srv.host}:{self.srv.port}")
        lines.append(f"X-Pep-App: {app}")
        for k, v in headers or []:
            lines.append(f"{k}: {v}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def request(self, app: str, target: str = "/", body: bytes = b"", **kw) -> None:
        headers = list(kw.pop("headers", None) or [])
        if body:
            headers.append(("Content-Length", str(len(body))))
        self.sock.sendall(self.head_bytes(app, target, headers=headers, **kw) + body)

    def response(self, head_request: bool = False) -> Resp:
        line = self.rfile.readline(65537)
        if not line:
            raise ConnectionError("connection closed before a response")
        raw_head = line
        version, status, *reason = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        assert version.startswith("HTTP/1."), line
        headers = []
        while True:
            h = self.rfile.readline(65537)
            raw_head += h
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Resp(int(status), reason[0] if reason else "", headers, b"", False, raw_head)
        code = resp.status
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if head_request or code in (204, 304) or 100 <= code < 200:
            resp.complete = True
            resp.framing = "none"
        elif "chunked" in te:
            resp.framing = "chunked"
            body = b""
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line.endswith(b"\n"):
                    break
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers up to the empty line
                    while True:
                        tl = self.rfile.readline(65537)
                        if tl in (b"\r\n", b"\n"):
                            resp.complete = True
                            break
                        if not tl:
                            break
                    break
                chunk = self.rfile.read(size)
                body += chunk
                if len(chunk) < size or self.rfile.read(2) != b"\r\n":
                    break
            resp.body = body
        elif cl is not None:
            resp.framing = "length"
            n = int(cl)
            resp.body = self.rfile.read(n)
            resp.complete = len(resp.body) == n
        else:
            resp.framing = "close"
            resp.body = self.rfile.read()
            resp.complete = True
        return resp

    def at_eof(self) -> bool:
        """True if the server closed the connection (read returns b'' before the timeout)."""
        try:
            return self.rfile.read(1) == b""
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True


def fetch(srv, app: str, target: str = "/", **kw) -> Resp:
    """One request on a fresh connection."""
    with Raw(srv) as c:
        c.request(app, target, **kw)
        return c.response(head_request=kw.get("method") == "HEAD")


def q(t: str, **params) -> str:
    return "/?" + urlencode({"t": t, **params})


def environ_of(srv, target: str = "/", **kw) -> dict:
    r = fetch(srv, "environ_json", target, **kw)
    assert r.status == 200, (r.status, r.body)
    return r.json()


def env_value(env: dict, key: str):
    d = env["env"][key]
    return d.get("value", d["repr"])


def assert_error_logged(srv, t: str, exc_text: str) -> str:
    """An ERROR record of the ferrule.error logger about the request with token `t` that
    names the exception (`exc_text` on one of the record's lines)."""
    m = srv.wait_for_log(
        r"PEPLOG ferrule\.error ERROR [^\n]*t=" + t + r"[^\n]*\n"
        r"(?:(?!PEPLOG )[^\n]*\n)*?(?!PEPLOG )[^\n]*" + re.escape(exc_text)
    )
    return m.group(0)


def assert_traceback_logged(srv, t: str, exc_text: str, frame: str) -> None:
    """Like assert_error_logged, and the record carries the full traceback through the
    app's frame `frame`."""
    record = assert_error_logged(srv, t, exc_text)
    assert "Traceback (most recent call last):" in record, f"no traceback logged:\n{record}"
    assert re.search(rf'File "[^"]*pep_apps\.py", line \d+, in {frame}\n', record), record


def assert_serving(srv) -> None:
    r = fetch(srv, "ok")
    assert (r.status, r.body) == (200, b"ok")


# --- environ -------------------------------------------------------------------------------

CGI_KEYS = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME")


def test_environ_required_keys_and_types(srv):
    env = environ_of(srv, "/some/path?x=1&y=two")
    e = env["env"]
    for key in (*CGI_KEYS, "SERVER_PORT", "SERVER_PROTOCOL"):
        assert key in e, key
    # every CGI-style (dot-less) key is a native str
    for key, d in e.items():
        if "." not in key:
            assert d["type"] == "str", (key, d)
    assert env_value(env, "REQUEST_METHOD") == "GET"
    assert env_value(env, "SCRIPT_NAME") == ""
    assert env_value(env, "PATH_INFO") == "/some/path"
    assert env_value(env, "QUERY_STRING") == "x=1&y=two"
    assert env_value(env, "SERVER_NAME")
    assert env_value(env, "SERVER_PORT") == str(srv.port)
    assert env_value(env, "SERVER_PROTOCOL") == "HTTP/1.1"
    assert env_value(env, "HTTP_HOST") == f"{srv.host}:{srv.port}"
    assert env_value(env, "HTTP_X_PEP_APP") == "environ_json"
    # no body sent: no CONTENT_TYPE/CONTENT_LENGTH (or empty), never the HTTP_ forms
    assert e.get("CONTENT_TYPE", {"value": ""})["value"] == ""
    assert e.get("CONTENT_LENGTH", {"value": ""})["value"] in ("", "0")
    assert "HTTP_CONTENT_TYPE" not in e and "HTTP_CONTENT_LENGTH" not in e
    # CGI variables and wsgi.* keys only: nothing left over from sizing the template
    assert all(k.startswith("wsgi.") or re.fullmatch(r"[A-Z][A-Z0-9_]*", k) for k in e), sorted(e)

    assert e["wsgi.version"]["type"] == "tuple"
    assert e["wsgi.version"]["repr"] == "(1, 0)"
    assert e["wsgi.url_scheme"] == {"type": "str", "repr": "'http'", "value": "http"}
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert e[key]["type"] == "bool", (key, e[key])
    assert e["wsgi.multiprocess"]["value"] is False
    assert e["wsgi.run_once"]["value"] is False
    assert e["wsgi.input_terminated"] == {"type": "bool", "repr": "True", "value": True}
    assert env["input_methods"] == dict.fromkeys(
        ("read", "readline", "readlines", "__iter__"), True
    )
    assert env["errors_methods"] == dict.fromkeys(("write", "writelines", "flush"), True)
    assert env["file_wrapper_callable"] is True
    assert env["empty_input_read"] == "b''"


def test_content_type_and_length_only_when_sent(srv):
    env = environ_of(
        srv,
        "/",
        method="POST",
        body=b'{"a": 1}',
        headers=[("Content-Type", "application/json; charset=utf-8")],
    )
    e = env["env"]
    assert env_value(env, "CONTENT_TYPE") == "application/json; charset=utf-8"
    assert env_value(env, "CONTENT_LENGTH") == "8"
    assert e["CONTENT_LENGTH"]["type"] == "str"
    assert env_value(env, "REQUEST_METHOD") == "POST"
    assert "HTTP_CONTENT_TYPE" not in e and "HTTP_CONTENT_LENGTH" not in e

    # an explicit empty body
    env = environ_of(srv, "/", method="POST", headers=[("Content-Length", "0")])
    assert env["env"]["CONTENT_LENGTH"]["value"] in ("0", "")
    assert env["empty_input_read"] == "b''"

    # chunked: no length is known; CONTENT_LENGTH absent or empty, never HTTP_CONTENT_LENGTH
    with Raw(srv) as c:
        c.sock.sendall(
            c.head_bytes(
                "environ_json",
                "/",
                method="POST",
                headers=[("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")],
            )
            + b"5\r\nhello\r\n0\r\n\r\n"
        )
        r = c.response()
    assert r.status == 200
    e = r.json()["env"]
    assert e.get("CONTENT_LENGTH", {}).get("value", "") == ""
    assert e["CONTENT_TYPE"]["value"] == "text/plain"
    assert "HTTP_CONTENT_TYPE" not in e and "HTTP_CONTENT_LENGTH" not in e
    assert "HTTP_TRANSFER_ENCODING" in e  # an ordinary header otherwise


@pytest.mark.parametrize(
    ("target", "path_info"),
    [
        ("/caf%C3%A9", "/" + LATIN1_CAFE),
        ("/%e2%82%ac/x", "/" + "\u20ac".encode().decode("latin-1") + "/x"),
        ("/a%2Fb", "/a/b"),
        ("/a%20b", "/a b"),
        ("/a+b", "/a+b"),
        ("/%7Euser/%41", "/~user/A"),
        ("/caf%C3%A9?q=caf%C3%A9", "/" + LATIN1_CAFE),
    ],
)
def test_path_info_percent_decoded_as_latin1(srv, target, path_info):
    env = environ_of(srv, target)
    assert env["env"]["PATH_INFO"]["type"] == "str"
    assert env_value(env, "PATH_INFO") == path_info


def test_raw_non_ascii_path_bytes_become_latin1(srv):
    """Unescaped UTF-8 bytes in the target: PATH_INFO holds the bytes as latin-1 chars."""
    with Raw(srv) as c:
        head = c.head_bytes("environ_json", "/PLACEHOLDER")
        c.sock.sendall(head.replace(b"PLACEHOLDER", b"caf\xc3\xa9/x"))
        r = c.response()
    assert r.status == 200
    assert env_value(r.json(), "PATH_INFO") == "/" + LATIN1_CAFE + "/x"


def test_query_string_is_raw(srv):
    raw_query = "a=%20b&c=d+e&caf%C3%A9=%2F&empty=&flag"
    env = environ_of(srv, "/p?" + raw_query)
    assert env_value(env, "QUERY_STRING") == raw_query
    assert env_value(env, "PATH_INFO") == "/p"
    env = environ_of(srv, "/p")
    assert env["env"].get("QUERY_STRING", {"value": ""})["value"] == ""


def test_http_headers_become_http_keys(srv):
    with Raw(srv) as c:
        c.sock.sendall(
            c.head_bytes(
                "environ_json",
                "/",
                headers=[
                    ("X-Custom-Thing", "value one"),
                    ("X-Multi", "a"),
                    ("Accept", "text/html"),
                    ("X-Multi", "b"),
                    ("x-multi", "c"),
                ],
            ).replace(b"\r\n\r\n", b"\r\nX-Latin: caf\xc3\xa9 \xff\r\n\r\n")
        )
        r = c.response()
    assert r.status == 200
    env = r.json()
    assert env_value(env, "HTTP_X_CUSTOM_THING") == "value one"
    assert env_value(env, "HTTP_ACCEPT") == "text/html"
    assert env_value(env, "HTTP_X_MULTI") == "a, b, c"
    # bytes of a header value arrive as a latin-1 decoded native str
    assert env_value(env, "HTTP_X_LATIN") == LATIN1_CAFE + " \u00ff"


def test_remote_addr_and_port(srv):
    with Raw(srv) as c:
        client_port = c.sock.getsockname()[1]
        c.request("environ_json")
        env = c.response().json()
    assert env_value(env, "REMOTE_ADDR") == "127.0.0.1"
    assert env["env"]["REMOTE_PORT"]["type"] == "str"
    assert env_value(env, "REMOTE_PORT") == str(client_port)
    assert env_value(env, "SERVER_PORT") == str(srv.port)


def test_server_protocol_http10_and_http11(srv):
    with Raw(srv) as c:
        c.request("environ_json", version="HTTP/1.0", host=False)
        env10 = c.response().json()
    assert env_value(env10, "SERVER_PROTOCOL") == "HTTP/1.0"
    assert env_value(env10, "SERVER_NAME")  # from the listener when there is no Host
    assert env_value(env10, "SERVER_PORT") == str(srv.port)
    assert "HTTP_HOST" not in env10["env"]
    env11 = environ_of(srv)
    assert env_value(env11, "SERVER_PROTOCOL") == "HTTP/1.1"


def test_repeated_headers_with_equal_values_are_joined(srv):
    """Found by the environ fuzzer: equal one-character values are one str object in
    CPython, which must not make the second field look like the first."""
    headers = [("X-A", "1"), ("x-a", "1"), ("X-B", "same"), ("X-B", "same"), ("X-C", "")]
    with Raw(srv) as c:
        c.request("environ_json", headers=headers + [("X-C", "")])
        env = c.response().json()
    assert env_value(env, "HTTP_X_A") == "1, 1"
    assert env_value(env, "HTTP_X_B") == "same, same"
    assert env_value(env, "HTTP_X_C") == ", "


def test_host_changes_between_requests(srv):
    """HTTP_HOST and SERVER_NAME follow each request's Host, however the one before it
    (the server keeps the strings of the last Host it saw)."""
    hosts = ["a.example", "b.example:8080", "b.example:8080", "[::1]:99", "a.example", None]
    with Raw(srv) as c:
        for host in hosts:
            headers = [("Connection", "keep-alive")] + ([("Host", host)] if host else [])
            c.request("environ_json", version="HTTP/1.0", host=False, headers=headers)
            env = c.response().json()
            if host is None:
                assert "HTTP_HOST" not in env["env"]
                assert env_value(env, "SERVER_NAME") not in ("a.example", "[::1]")
                continue
            assert env_value(env, "HTTP_HOST") == host
            assert env_value(env, "SERVER_NAME") == (host.rpartition(":")[0] or host)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"])
def test_request_method_passed_through(srv, method):
    env = environ_of(srv, "/", method=method)
    assert env_value(env, "REQUEST_METHOD") == method


def test_root_path_sets_script_name(start_server):
    s = start_server("--root-path", "/app", "pep_apps:environ_json")
    cases = {
        "/app/x": "/x",
        "/app/x/y?z=1": "/x/y",
        "/app": "",
        "/app/": "/",
        "/app/caf%C3%A9": "/" + LATIN1_CAFE,
    }
    for target, path_info in cases.items():
        env = environ_of(s, target)
        assert env_value(env, "SCRIPT_NAME") == "/app", target
        assert env_value(env, "PATH_INFO") == path_info, target


@pytest.mark.parametrize(("threads", "multithread"), [("1", False), ("4", True)])
def test_multithread_follows_threads(start_server, threads, multithread):
    s = start_server("--threads", threads, "pep_apps:environ_json")
    env = environ_of(s)
    assert env["env"]["wsgi.multithread"] == {
        "type": "bool",
        "repr": repr(multithread),
        "value": multithread,
    }
    assert env["env"]["wsgi.multiprocess"]["value"] is False


# --- wsgi.input ----------------------------------------------------------------------------


def make_body(size: int, seed: int = 3333) -> bytes:
    """Lines of varied length (some longer than the server's 64 KiB reads), no final LF."""
    rnd = random.Random(seed)
    parts = []
    total = 0
    while total < size:
        n = rnd.choice([0, 1, 5, 80, 700, 4000, 70_000, 200_000]) if rnd.random() < 0.2 else 60
        line = bytes(rnd.randrange(32, 127) for _ in range(min(n, 64))) * (n // 64 + 1)
        line = line[:n] + b"\n"
        parts.append(line)
        total += len(line)
    body = b"".join(parts)[:size]
    return body.rstrip(b"\n") + b"tail-without-newline"


BIG_BODY = make_body(int(1.5 * 1024 * 1024))


def chunked(body: bytes, seed: int = 7) -> bytes:
    """Chunked encoding with irregular chunk sizes, a chunk extension and a trailer."""
    rnd = random.Random(seed)
    out = []
    i = 0
    while i < len(body):
        n = rnd.choice([1, 7, 100, 4096, 65535, 65536, 65537, 300_000])
        piece = body[i : i + n]
        ext = b";name=value" if rnd.random() < 0.1 else b""
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
        i += n
    out.append(b"0\r\nX-Trailer: done\r\n\r\n")
    return b"".join(out)


INPUT_OPS = [
    ("read_n", 10007),
    ("read_n", 1 << 20),
    ("read_all", 0),
    ("read_minus1", 0),
    ("read_none", 0),
    ("readline", 0),
    ("readline_limit", 1000),
    ("readlines", 0),
    ("readlines_hint", 50_000),
    ("iter", 0),
    ("mixed", 12345),
]


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize(("op", "n"), INPUT_OPS, ids=[f"{o}-{n}" for o, n in INPUT_OPS])
def test_wsgi_input_methods(srv, framing, op, n):
    body = BIG_BODY
    target = "/?" + urlencode({"op": op, "n": n})
    with Raw(srv, timeout=20) as c:
        if framing == "length":
            head = c.head_bytes(
                "input_ops", target, method="POST", headers=[("Content-Length", str(len(body)))]
            )
            payload = head + body
        else:
            head = c.head_bytes(
                "input_ops", target, method="POST", headers=[("Transfer-Encoding", "chunked")]
            )
            payload = head + chunked(body)
        # a second request pipelined right behind the body must survive the body reads
        c.sock.sendall(payload + c.head_bytes("ok"))
        r = c.response()
        assert r.status == 200, r.body[:2000]
        got = r.json()
        stream = io.BytesIO(body)
        want = pep_input.summarize(pep_input.run_input_op(stream, op, n), stream)
        assert got["sha256"] == want["sha256"]
        assert got["types"] == ["bytes"]
        assert got["lens"] == want["lens"]
        assert got["groups"] == want["groups"]
        # reads past the end return empty values
        assert got["after"] == ["b''", "b''", "b''", "b''", "b''", "[]", "[]"]
        r2 = c.response()
        assert (r2.status, r2.body) == (200, b"ok")


@pytest.mark.parametrize(("op", "n"), INPUT_OPS, ids=[f"{o}-{n}" for o, n in INPUT_OPS])
def test_wsgi_input_without_body(srv, op, n):
    """Requests without a body share one stateless empty stream: every read of it is empty,
    however often it was read before, and a request with a body still gets its own."""
    target = "/?" + urlencode({"op": op, "n": n})
    empty = io.BytesIO(b"")
    want = pep_input.summarize(pep_input.run_input_op(empty, op, n), empty)
    with Raw(srv) as c:
        for _ in range(3):
            c.request("input_ops", target)
            got = c.response().json()
            assert (got["sha256"], got["lens"]) == (want["sha256"], want["lens"])
            assert got["after"] == ["b''", "b''", "b''", "b''", "b''", "[]", "[]"]
        c.request("input_ops", target, method="POST", body=b"abc\ndef")
        got = c.response().json()
        assert got["sha256"] == hashlib.sha256(b"abc\ndef").hexdigest()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_wsgi_input_small_body(srv, framing):
    body = b"line one\nline two\n\nlast"
    target = "/?" + urlencode({"op": "readlines", "n": 0})
    with Raw(srv) as c:
        if framing == "length":
            c.request("input_ops", target, method="POST", body=body)
        else:
            head = c.head_bytes(
                "input_ops", target, method="POST", headers=[("Transfer-Encoding", "chunked")]
            )
            c.sock.sendall(
                head + b"3\r\nlin\r\n10\r\ne one\nline two\n\n\r\n4\r\nlast\r\n0\r\n\r\n"
            )
        got = c.response().json()
    assert got["lens"] == [9, 9, 1, 4]
    assert got["sha256"] == hashlib.sha256(body).hexdigest()


def test_partial_read_keeps_connection(srv):
    body = bytes(range(256)) * 40  # 10 KiB; the app reads 10 bytes of it
    with Raw(srv) as c:
        c.request("partial_read", "/?n=10", method="POST", body=body)
        assert c.response().json() == {"got": 10}
        c.request("ok")
        r = c.response()
        assert (r.status, r.body) == (200, b"ok")


def test_expect_100_continue(srv):
    body = b"x" * 200_000
    with Raw(srv) as c:
        c.sock.sendall(
            c.head_bytes(
                "upload_hash",
                "/",
                method="POST",
                headers=[("Content-Length", str(len(body))), ("Expect", "100-continue")],
            )
        )
        interim = c.response()
        assert (interim.status, interim.reason) == (100, "Continue")
        c.sock.sendall(body)
        r = c.response()
    assert r.status == 200
    assert r.json() == {
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "biggest": 65536,
    }


def test_expect_100_continue_not_sent_when_body_unread(srv):
    with Raw(srv) as c:
        c.sock.sendall(
            c.head_bytes(
                "no_read",
                "/",
                method="POST",
                headers=[("Content-Length", "100000"), ("Expect", "100-continue")],
            )
        )
        r = c.response()
    assert (r.status, r.body) == (200, b"unread")


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def test_big_upload_is_streamed(start_server):
    s = start_server("pep_apps:router")
    size = 256 * 1024 * 1024
    block = random.Random(1).randbytes(1 << 20)
    # warm up (imports, thread stacks, allocator) before taking the baseline
    r = fetch(s, "upload_hash", method="POST", body=block)
    assert r.json()["bytes"] == len(block)
    before = proc_status(s.proc.pid)

    h = hashlib.sha256()
    start = time.monotonic()
    with Raw(s, timeout=30) as c:
        c.sock.sendall(
            c.head_bytes("upload_hash", "/", method="POST", headers=[("Content-Length", str(size))])
        )
        for i in range(size // len(block)):
            piece = block[i % 7 :] + block[: i % 7]  # vary it so the hash sees order
            h.update(piece)
            c.sock.sendall(piece)
        r = c.response()
    elapsed = time.monotonic() - start
    after = proc_status(s.proc.pid)
    assert r.status == 200
    assert r.json()["bytes"] == size
    assert r.json()["sha256"] == h.hexdigest()
    growth = after["VmHWM"] - before["VmRSS"]
    print(f"upload {size >> 20} MiB in {elapsed:.2f}s, RSS {before} -> {after}")
    assert growth < 64 * 1024 * 1024, f"server RSS peaked {growth / 2**20:.1f} MiB above baseline"
    assert elapsed < 30


# --- wsgi.errors ---------------------------------------------------------------------------


def test_wsgi_errors_reach_the_error_log(srv, t):
    r = fetch(srv, "errors_app", q(t))
    assert (r.status, r.body) == (200, b"ok"), "wsgi.errors accepted bytes (it is a text stream)"
    for text in ("line-one", "split line-two", "wl-a", "wl-b", "flushed-partial"):
        srv.wait_for_log(rf"PEPLOG ferrule\.error ERROR pep-errors {t} {text}\n")


# --- start_response and write() ------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({}, b"hello world"),
        ({"cl": "11"}, b"hello world"),
        ({"tail": "1"}, b"hello world and the iterable"),
    ],
)
def test_write_callable(srv, t, params, body):
    with Raw(srv) as c:
        c.request("write_app", q(t, **params))
        r = c.response()
        assert r.status == 200
        assert r.complete and r.body == body
        if "cl" in params:
            assert r.header("Content-Length") == "11"
        c.request("ok")  # still usable
        assert c.response().body == b"ok"


def test_write_rejects_str(srv, t):
    r = fetch(srv, "write_non_bytes", q(t))
    assert r.body == b"write() refused str"


def test_a_kept_write_callable_cannot_write_into_a_later_response(srv, t):
    """A thread reuses its last start_response object only when nothing kept it: a write()
    the app held on to stays bound to its own, finished response."""
    with Raw(srv) as c:
        c.request("keep_write", q(t, keep=t))
        assert c.response().body == b"kept"
        for _ in range(3):  # later exchanges on the same thread
            c.request("ok")
            assert c.response().body == b"ok"
        c.request("keep_write", q(t, use=t))
        r = c.response()
    # The old write() goes nowhere (its response is over); it must not reach this one.
    assert r.status == 200 and r.complete
    assert r.body == b"old write returned"


@pytest.mark.parametrize("pipelined", [False, True])
def test_each_response_carries_only_its_own_status_and_headers(srv, t, pipelined):
    """Back-to-back exchanges on one connection (pipelined: their responses are held and
    written together) reuse buffers; nothing of one response may reach the next."""
    cases = [("201 Made", "X-First"), ("200 OK", "X-Second"), ("404 Gone", "X-Third")]
    with Raw(srv) as c:
        targets = [q(t, status=s, header=h) for s, h in cases]
        if pipelined:
            c.sock.sendall(b"".join(c.head_bytes("varied_response", x) for x in targets))
            got = [c.response() for _ in cases]
        else:
            got = []
            for x in targets:
                c.request("varied_response", x)
                got.append(c.response())
    for (status, header), r in zip(cases, got):
        assert f"{r.status} {r.reason}" == status
        assert r.header(header) == "yes" and r.body == header.encode()
        others = [h for _, h in cases if h != header]
        assert all(r.header(h) is None for h in others), r.raw_head


def test_start_response_with_too_few_or_many_arguments_is_a_type_error(srv, t):
    """start_response returns itself as write(): one argument writes, so a lone status is
    refused as a str given to write(), with a message that names both uses."""
    r = fetch(srv, "start_response_misuse", q(t))
    assert r.status == 200
    one, four = r.body.decode().split("\n")
    assert "write() takes bytes, not str" in one and "start_response() takes" in one
    assert "start_response() takes a status" in four and "(4 given)" in four


def test_start_response_accepts_every_python_call_form(srv, t):
    """A plain call reaches start_response through vectorcall, `type(sr).__call__` through
    tp_call: both accept exc_info by keyword or position and refuse what PEP 3333 does not
    allow, with the same messages."""
    r = fetch(srv, "start_response_call_forms", q(t))
    assert r.status == 201 and r.reason == "Slot"
    seen = dict(line.split(": ", 1) for line in r.body.decode().split("\n"))
    assert seen["callable"] == "True"
    assert seen["vectorcall"] == "True"
    assert seen["keyword"] == "self"
    assert seen["again"].startswith("RuntimeError: start_response() called a second time")
    assert seen["positional"] == "self"
    assert seen["bogus"] == "TypeError: unexpected keyword argument 'bogus'"
    assert seen["both"].startswith("TypeError: start_response() takes")
    assert "(4 given)" in seen["both"]
    assert seen["partial"] == "self"
    assert seen["slot"] == "self"
    assert seen["slot_bogus"].startswith("TypeError") and "bogus" in seen["slot_bogus"]


@pytest.mark.parametrize(
    "status",
    [
        "200",
        "abc",
        "20 OK",
        "2000 OK",
        "OK 200",
        "200OK",
        "099 Low",
        "200 OK\r\nX-Injected: yes",
        "200 Snow \u2603",
        "200 BYTES",  # the app passes it as bytes, not a native str
    ],
)
def test_invalid_status_is_500(srv, t, status):
    with Raw(srv) as c:
        c.request("bad_status", q(t, status=status))
        r = c.response()
    assert r.status == 500
    assert b"X-Injected" not in r.raw_head
    assert b"should not be sent" not in r.body
    assert_error_logged(srv, t, "Error")


@pytest.mark.parametrize(
    "kind",
    [
        "crlf",
        "lf",
        "cr",
        "latin1",
        "bytes_value",
        "bytes_name",
        "bad_name",
        "name_colon",
        "not_pair",
        "tuple_headers",
    ],
)
def test_invalid_header_is_500(srv, t, kind):
    with Raw(srv) as c:
        c.request("bad_header", q(t, kind=kind))
        r = c.response()
    assert r.status == 500
    assert r.header("X-Injected") is None and r.header("X-Bad") is None
    assert b"X-Injected" not in r.raw_head and b"should not be sent" not in r.body
    assert_error_logged(srv, t, "Error")


@pytest.mark.parametrize(
    ("app", "lines"),
    [
        ("latin1_header", b"\r\nX-Latin: caf\xe9 \xff\r\n"),
        # a str subclass stores its characters apart from the object
        ("str_subclass_header", b"\r\nX-Sub: caf\xe9\r\nX-Plain: plain\r\n"),
    ],
)
def test_header_text_sent_as_latin1_bytes(srv, app, lines):
    with Raw(srv) as c:
        c.request(app)
        r = c.response()
    assert r.status == 200
    assert lines in r.raw_head


@pytest.mark.parametrize("app", ["twice", "twice_exc_none"])
def test_start_response_twice_without_exc_info_is_500(srv, t, app):
    r = fetch(srv, app, q(t))
    assert r.status == 500
    assert b"should not be sent" not in r.body
    assert_error_logged(srv, t, "start_response")


def test_exc_info_replaces_unsent_response(srv, t):
    with Raw(srv) as c:
        c.request("exc_replace", q(t))
        r = c.response()
    assert (r.status, r.reason) == (503, "Replaced")
    assert r.header("X-Replacement") == "yes"
    assert r.header("X-Original") is None
    assert r.complete and r.body == b"replaced"


def test_exc_info_replaces_after_empty_first_chunk(srv, t):
    """The head is held until the first non-empty chunk, so it can still be replaced."""
    with Raw(srv) as c:
        c.request("exc_replace_after_empty", q(t))
        r = c.response()
    assert (r.status, r.reason) == (500, "Replaced Late")
    assert r.header("X-Replacement") == "yes"
    assert r.header("X-Original") is None
    assert r.complete and r.body == b"late replacement"


def test_exc_info_on_first_call(srv, t):
    r = fetch(srv, "exc_first_call", q(t))
    assert (r.status, r.reason, r.body) == (500, "Handled", b"handled")


@pytest.mark.parametrize("app", ["exc_after_write", "exc_after_yield"])
def test_exc_info_after_body_reraises_and_closes(srv, t, app):
    with Raw(srv) as c:
        c.request(app, q(t))
        r = c.response()
        assert r.status == 200
        assert r.body.startswith(b"partial body ")
        assert b"returned after the body started" not in r.body
        assert not r.complete, "the truncated response must not look complete"
        assert c.at_eof(), "the connection must be closed after a truncated response"
    srv.wait_for_log(rf"PEPLOG ferrule\.error ERROR pep-reraised {t} same=True\n")
    assert f"pep-not-reraised {t}" not in srv.log
    kind = "write" if app == "exc_after_write" else "yield"
    assert_error_logged(srv, t, f"pep-exc-after-{kind} {t}")
    assert_serving(srv)


def test_start_response_inside_generator(srv, t):
    r = fetch(srv, "lazy_start", q(t))
    assert r.status == 200
    assert r.header("X-Lazy") == "yes"
    assert r.complete and r.body == b"lazy body"


def test_http10_response_without_length_ends_by_close(srv, t):
    """HTTP/1.0 has no chunked coding: a streamed body is delimited by closing."""
    with Raw(srv) as c:
        c.request("lazy_start", q(t), version="HTTP/1.0", host=False)
        r = c.response()
    assert r.status == 200
    assert r.raw_head.startswith(b"HTTP/1.")
    assert r.header("Transfer-Encoding") is None
    assert r.body == b"lazy body"


# --- the iterable's close() ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "body", "mark"),
    [
        ("close_ok", b"one two 3", "pep-close {t} #1"),
        ("close_ok_validated", b"alpha beta", "pep-close {t} #1"),
        ("close_generator", b"gen body", "pep-gen-finally {t}"),
        ("close_list_subclass", b"list", "pep-close {t} #1"),
        ("close_tuple_subclass", b"tuple", "pep-close {t} #1"),
    ],
)
def test_close_called_on_success(srv, t, app, body, mark):
    with Raw(srv) as c:
        c.request(app, q(t))
        r = c.response()
        assert r.status == 200 and r.complete and r.body == body
        c.request("ok")
        assert c.response().body == b"ok"
    srv.wait_for_log(re.escape(mark.format(t=t)) + r"\n")
    assert f"pep-close {t} #2" not in srv.log


def test_close_called_on_head_request(srv, t):
    with Raw(srv) as c:
        c.request("close_ok", q(t), method="HEAD")
        r = c.response(head_request=True)
        assert r.status == 200 and r.header("Content-Length") == "9"
        c.request("ok")  # no body bytes were sent after the head
        r2 = c.response()
        assert (r2.status, r2.body) == (200, b"ok")
    srv.wait_for_log(rf"pep-close {t} #1\n")


def test_close_called_when_iterable_raises(srv, t):
    with Raw(srv) as c:
        c.request("close_midway", q(t))
        r = c.response()
        assert r.status == 200
        assert r.body == b"first chunk second chunk "
        assert not r.complete
        assert c.at_eof()
    assert_error_logged(srv, t, f"pep-iter-boom {t}")
    srv.wait_for_log(rf"pep-close {t} #1\n")
    assert_serving(srv)


def test_close_called_when_client_disconnects(srv, t):
    c = Raw(srv)
    c.request("close_forever", q(t))
    r_line = c.rfile.readline()
    assert r_line.startswith(b"HTTP/1.1 200")
    assert len(c.rfile.read(100_000)) == 100_000
    # reset the connection with unread data pending
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    srv.wait_for_log(rf"pep-close {t} #1\n")
    assert_serving(srv)


def test_close_that_raises_is_logged_and_response_completes(srv, t):
    with Raw(srv) as c:
        c.request("close_raises", q(t))
        r = c.response()
    assert r.status == 200 and r.complete and r.body == b"complete body"
    srv.wait_for_log(rf"pep-close {t} #1\n")
    record = assert_error_logged(srv, t, f"RuntimeError: pep-close-boom {t}")
    assert "clos" in record.splitlines()[0].lower(), record
    assert_serving(srv)


# --- Content-Length enforcement ------------------------------------------------------------


@pytest.mark.parametrize("how", ["list", "gen", "write"])
def test_app_body_shorter_than_content_length_closes(srv, t, how):
    with Raw(srv) as c:
        c.request("cl_mismatch", q(t, cl=10, send=5, how=how))
        r = c.response()
        assert r.status == 200
        assert r.header("Content-Length") == "10"
        assert r.body == b"01234"
        # the body was cut short by the server closing the connection (a kept-alive
        # connection would have made the read time out instead)
        assert not r.complete


@pytest.mark.parametrize("how", ["list", "gen", "write"])
def test_app_body_longer_than_content_length_truncated(srv, t, how):
    with Raw(srv) as c:
        c.request("cl_mismatch", q(t, cl=5, send=10, how=how))
        r = c.response()
        assert r.status == 200
        assert r.header("Content-Length") == "5"
        assert r.complete and r.body == b"01234"
        # the extra bytes were not sent: the next response on this connection parses
        c.request("ok")
        r2 = c.response()
        assert (r2.status, r2.body) == (200, b"ok")
    srv.wait_for_log(r"PEPLOG ferrule\.error WARNING [^\n]*t=" + t + r"[^\n]*Content-Length")


# --- wsgi.file_wrapper ---------------------------------------------------------------------

FILE_DATA = random.Random(5).randbytes(300_000)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("pep_files") / "data.bin"
    p.write_bytes(FILE_DATA)
    return p


@pytest.mark.parametrize(
    ("kind", "offset", "blksize"),
    [
        ("real", 0, None),
        ("real", 12345, None),
        ("real", 0, 1000),
        ("bytesio", 0, None),
        ("bytesio", 54321, None),
        ("bytesio", 0, 333),
        ("readonly", 0, None),
    ],
)
def test_file_wrapper(srv, t, data_file, kind, offset, blksize):
    params = {"kind": kind, "path": str(data_file), "offset": offset}
    if blksize:
        params["blksize"] = blksize
    expected = FILE_DATA[offset:]
    with Raw(srv, timeout=20) as c:
        c.request("file_wrapper_app", q(t, **params))
        r = c.response()
        assert r.status == 200
        assert r.complete
        assert len(r.body) == len(expected)
        assert r.body == expected
        if kind == "real":
            assert r.header("Content-Length") == str(len(expected))
        if r.header("Content-Length") is not None:
            assert r.header("Content-Length") == str(len(expected))
        # the wrapper's close() closed the file
        if kind != "readonly":
            c.request("file_closed", q(t))
            assert c.response().json() == {"known": True, "closed": True}


@pytest.mark.parametrize("kind", ["real", "bytesio"])
def test_file_wrapper_honours_smaller_content_length(srv, t, data_file, kind):
    params = {"kind": kind, "path": str(data_file), "offset": 100, "cl": 1000}
    with Raw(srv) as c:
        c.request("file_wrapper_app", q(t, **params))
        r = c.response()
        assert r.status == 200 and r.header("Content-Length") == "1000"
        assert r.complete and r.body == FILE_DATA[100:1100]
        c.request("ok")  # nothing beyond the 1000 bytes was sent
        r2 = c.response()
        assert (r2.status, r2.body) == (200, b"ok")


def test_file_wrapper_file_shorter_than_content_length_closes(srv, t, data_file):
    params = {"kind": "real", "path": str(data_file), "offset": 0, "cl": len(FILE_DATA) + 10}
    with Raw(srv, timeout=20) as c:
        c.request("file_wrapper_app", q(t, **params))
        r = c.response()
    assert r.status == 200
    assert r.body == FILE_DATA
    assert not r.complete  # cut short by the server closing the connection


# --- app errors and misbehaving apps -------------------------------------------------------


def test_exception_before_start_response(srv, t):
    r = fetch(srv, "raise_before", q(t))
    assert r.status == 500
    assert r.complete
    assert_error_logged(srv, t, f"RuntimeError: pep-raise-before {t}")
    assert_serving(srv)


def test_exception_after_start_response_before_body(srv, t):
    r = fetch(srv, "raise_after_start", q(t))
    assert r.status == 500
    assert r.header("X-Original") is None
    assert_error_logged(srv, t, f"RuntimeError: pep-raise-after-start {t}")
    assert_serving(srv)


def test_exception_after_body_started(srv, t):
    with Raw(srv) as c:
        c.request("raise_after_body", q(t))
        r = c.response()
        assert r.status == 200
        assert r.body == b"the start of the body "
        assert not r.complete
        assert c.at_eof()
    assert_error_logged(srv, t, f"RuntimeError: pep-raise-after-body {t}")
    assert_serving(srv)


@pytest.mark.parametrize(
    ("app", "exc_text", "frame"),
    [
        ("raise_before", "RuntimeError: pep-raise-before", "raise_before"),
        ("raise_after_body", "RuntimeError: pep-raise-after-body", "raise_after_body"),
        ("close_midway", "RuntimeError: pep-iter-boom", "__iter__"),
    ],
)
def test_error_log_has_the_traceback(srv, t, app, exc_text, frame):
    """The logged error carries the traceback (through the app's frame), not just the
    exception's message."""
    with Raw(srv) as c:
        c.request(app, q(t))
        c.response()
    assert_traceback_logged(srv, t, f"{exc_text} {t}", frame)


@pytest.mark.parametrize(
    "app",
    [
        "returns_str",
        "returns_list_of_str",
        "returns_int",
        "returns_none",
        "no_start_response",
        "no_start_response_body",
        "no_start_response_gen",
    ],
)
def test_misbehaving_app_is_500(srv, t, app):
    r = fetch(srv, app, q(t))
    assert r.status == 500
    assert b"str" not in r.body and b"body without" not in r.body
    assert_error_logged(srv, t, "Error")
    assert_serving(srv)
