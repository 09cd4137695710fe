"""A raw HTTP/1.x client for the hostile-input tests (corpus, smuggling, slow clients,
misbehaving apps), and the loader of gunicorn's request corpus.

`Client` sends bytes in any split (whole, line by line, byte by byte, random pieces) with
TCP_NODELAY, and reads exactly one response at a time, keeping the bytes after it, so
pipelined responses are read one by one. `Outcome` says how a connection ended.

The corpus (gunicorn's `tests/requests/{valid,invalid}/*.http` with their `.py`
expectations) is fetched from PyPI at test time with `pip download` and cached under
`tests/.cache/`; it is never committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import re
import socket
import subprocess
import sys
import tarfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

TIMEOUT = 5.0

# --- responses ------------------------------------------------------------------------------


@dataclass
class Reply:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    complete: bool = True  # the body ended where its framing said (not cut short by EOF)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def has_token(self, name: str, token: str) -> bool:
        value = self.header(name) or ""
        return token.lower() in [t.strip().lower() for t in value.split(",")]


class Closed(Exception):
    """The server closed the connection (EOF or RST) before a complete response head."""

    def __init__(self, partial: bytes):
        super().__init__(f"connection closed; partial response {partial[:200]!r}")
        self.partial = partial


class Client:
    """One connection to the server, with its own read buffer."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.send_failed = False

    @classmethod
    def to(cls, srv: Any, timeout: float = TIMEOUT) -> Client:
        return cls(srv.host, srv.port, timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # sending

    def send(self, data: bytes) -> None:
        self.send_pieces([data])

    def send_pieces(self, pieces: list[bytes]) -> bool:
        """Send each piece with its own send call; False if the server stopped taking them
        (it closed or reset the connection, as a refusal may)."""
        for piece in pieces:
            try:
                self.sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                self.send_failed = True
                return False
        return True

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # receiving

    def _fill(self, deadline: float | None = None) -> bool:
        if self.eof:
            return False
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            self.sock.settimeout(left)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self, deadline: float | None) -> bytes:
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("response line longer than 1 MiB")
            if not self._fill(deadline):
                raise Closed(bytes(self.buf))
        at = self.buf.index(b"\n")
        line = bytes(self.buf[:at])
        del self.buf[: at + 1]
        if not line.endswith(b"\r"):
            raise AssertionError(f"response line not ended by CRLF: {line!r}")
        return line[:-1]

    def _exact(self, n: int, deadline: float | None) -> tuple[bytes, bool]:
        while len(self.buf) < n:
            if not self._fill(deadline):
                out = bytes(self.buf)
                self.buf.clear()
                return out, False
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out, True

    def response(self, method: str = "GET", timeout: float | None = None) -> Reply:
        """Read exactly one response. Raises Closed if the connection ends before a complete
        head, TimeoutError if nothing complete arrives within `timeout` (default: the
        socket timeout, per read)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        status_line = self._line(deadline).decode("latin-1")
        m = re.fullmatch(r"(HTTP/1\.[01]) (\d{3})(?: (.*))?", status_line)
        if not m:
            raise AssertionError(f"bad status line {status_line!r}")
        headers = []
        while True:
            line = self._line(deadline).decode("latin-1")
            if not line:
                break
            name, colon, value = line.partition(":")
            assert colon and name == name.strip(), f"bad response header line {line!r}"
            headers.append((name, value.strip(" \t")))
        r = Reply(m.group(1), int(m.group(2)), m.group(3) or "", headers)
        if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
            return r
        te, cl = r.header("Transfer-Encoding"), r.header("Content-Length")
        if te is not None:
            assert te.lower() == "chunked", f"unexpected Transfer-Encoding {te!r}"
            assert cl is None, "a response with both Content-Length and Transfer-Encoding"
            parts = []
            while True:
                try:
                    size = int(self._line(deadline).split(b";")[0].strip(), 16)
                except Closed:
                    r.complete = False
                    break
                if size == 0:
                    while self._line(deadline):
                        pass
                    break
                piece, ok = self._exact(size + 2, deadline)
                parts.append(piece[:size])
                if not ok:
                    r.complete = False
                    break
                assert piece[size:] == b"\r\n", "chunk data not followed by CRLF"
            r.body = b"".join(parts)
        elif cl is not None:
            assert re.fullmatch(r"\d+", cl), f"bad response Content-Length {cl!r}"
            r.body, r.complete = self._exact(int(cl), deadline)
        else:
            while self._fill(deadline):
                pass
            r.body = bytes(self.buf)
            self.buf.clear()
        return r

    def closed_within(self, seconds: float) -> bool:
        """True if the server closes (EOF or RST) within `seconds` without sending anything
        more; bytes from the server fail the test, False on timeout."""
        assert not self.buf, f"unexpected bytes after the response: {self.buf[:200]!r}"
        deadline = time.monotonic() + seconds
        try:
            got_data = self._fill(deadline)
        except (TimeoutError, socket.timeout):
            return False
        assert not got_data, f"unexpected bytes after the response: {self.buf[:200]!r}"
        return True

    def silent_for(self, seconds: float) -> bool:
        """True if nothing arrives (no bytes and no close) for `seconds`."""
        if self.buf or self.eof:
            return False
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(65536, socket.MSG_PEEK)
        except (TimeoutError, socket.timeout):
            return True
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        return False  # bytes or EOF arrived


def request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str | None = "hostile.test",
) -> bytes:
    """A request's bytes; adds Host (unless host=None) and, for a body without framing
    headers, Content-Length."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    framed = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- splitting a message four ways ---------------------------------------------------------

SPLIT_SEED = 6


def split_whole(data: bytes) -> list[bytes]:
    return [data]


def split_lines(data: bytes) -> list[bytes]:
    """Pieces that each end after a LF (the last may not)."""
    return [piece for piece in re.split(b"(?<=\n)", data) if piece]


def split_bytes(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_random(data: bytes, seed: int = SPLIT_SEED) -> list[bytes]:
    """Random pieces of 1 to max(1, len/10) bytes, reproducible from `seed` and the data."""
    rng = random.Random(seed * 1_000_003 + len(data))
    top = max(1, len(data) // 10)
    pieces, i = [], 0
    while i < len(data):
        n = rng.randint(1, top)
        pieces.append(data[i : i + n])
        i += n
    return pieces


SPLITS: dict[str, Callable[[bytes], list[bytes]]] = {
    "whole": split_whole,
    "lines": split_lines,
    "bytes": split_bytes,
    "random": split_random,
}


# --- gunicorn's request corpus -------------------------------------------------------------

GUNICORN_VERSION = "27.0.1"
GUNICORN_SDIST_SHA256 = "b1514965361c8b7e8107a80aa2a92636878df1ccfac6dd204a676426e04d9e3e"
CACHE = Path(__file__).resolve().parent / ".cache"


def fetch_corpus() -> Path:
    """The `tests/requests` directory of gunicorn's sdist, downloaded once with pip (into
    tests/.cache) and checked against its sha256. Raises on any failure."""
    CACHE.mkdir(exist_ok=True)
    root = CACHE / f"gunicorn-{GUNICORN_VERSION}"
    corpus = root / "tests" / "requests"
    with open(CACHE / "corpus.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (corpus / "valid").is_dir() and (corpus / "invalid").is_dir():
            return corpus
        sdist = CACHE / f"gunicorn-{GUNICORN_VERSION}.tar.gz"
        if not sdist.exists():
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    f"gunicorn=={GUNICORN_VERSION}",
                    "-d",
                    str(CACHE),
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode != 0 or not sdist.exists():
                raise RuntimeError(
                    f"pip download of gunicorn=={GUNICORN_VERSION} failed "
                    f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                )
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != GUNICORN_SDIST_SHA256:
            sdist.unlink()
            raise RuntimeError(f"{sdist.name}: sha256 {digest}, expected {GUNICORN_SDIST_SHA256}")
        prefix = f"gunicorn-{GUNICORN_VERSION}/tests/requests/"
        with tarfile.open(sdist) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(prefix) and (m.isfile() or m.isdir())
            ]
            tar.extractall(CACHE, members=members)  # noqa: S202 - names checked above
    return corpus


def decode_http(text: bytes) -> bytes:
    """The bytes a corpus `.http` file stands for: literal newlines are dropped; `\\r\\n`,
    `\\n`, `\\t`, `\\0` and `\\xHH` are escapes. Any other backslash is an error."""
    text = text.replace(b"\r", b"").replace(b"\n", b"")
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        if text.startswith(b"\\r\\n", i):
            out += b"\r\n"
            i += 4
            continue
        esc = text[i + 1 : i + 2]
        if esc == b"n":
            out += b"\n"
        elif esc == b"t":
            out += b"\t"
        elif esc == b"0":
            out += b"\0"
        elif esc == b"x" and re.fullmatch(rb"[0-9A-Fa-f]{2}", text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
            continue
        else:
            raise ValueError(f"unknown escape {text[i : i + 4]!r} at offset {i}")
        i += 2
    return bytes(out)


class _GunicornConfig:
    """Stands in for gunicorn's Config in the expectation files: records cfg.set() calls."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}

    def set(self, name: str, value: Any) -> None:
        self.settings[name] = value


def _uri(raw: str) -> dict[str, str]:
    return {"raw": raw}


@dataclass
class Case:
    """One corpus case: the bytes to send and what gunicorn expects."""

    name: str  # e.g. "valid/018"
    data: bytes
    expect: list[dict[str, Any]] = field(default_factory=list)  # valid cases
    error: str = ""  # invalid cases: gunicorn's exception class name
    cfg: dict[str, Any] = field(default_factory=dict)


def _exec_expectation(path: Path) -> dict[str, Any]:
    """Run a corpus `.py` file with stand-ins for the gunicorn modules it imports."""
    errors = types.ModuleType("gunicorn.http.errors")
    made: dict[str, type] = {}

    def error_class(name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return made.setdefault(name, type(name, (Exception,), {}))

    errors.__getattr__ = error_class  # type: ignore[method-assign]
    config = types.ModuleType("gunicorn.config")
    config.Config = _GunicornConfig  # type: ignore[attr-defined]
    stand_ins = {
        "gunicorn": types.ModuleType("gunicorn"),
        "gunicorn.http": types.ModuleType("gunicorn.http"),
        "gunicorn.http.errors": errors,
        "gunicorn.config": config,
    }
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    namespace: dict[str, Any] = {"uri": _uri, "cfg": _GunicornConfig(), "__name__": "corpus"}
    try:
        exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return namespace


def load_cases(corpus: Path, kind: str) -> list[Case]:
    """Every case of `kind` ("valid" or "invalid"), sorted by name."""
    cases = []
    for http in sorted((corpus / kind).glob("*.http")):
        ns = _exec_expectation(http.with_suffix(".py"))
        expected = ns["request"]
        case = Case(f"{kind}/{http.stem}", decode_http(http.read_bytes()))
        case.cfg = dict(ns["cfg"].settings)
        if isinstance(expected, type):
            case.error = expected.__name__
        else:
            case.expect = expected if isinstance(expected, list) else [expected]
        cases.append(case)
    return cases


# --- the server process ---------------------------------------------------------------------


def proc_counts(pid: int) -> tuple[int, int]:
    """(open fds, threads) of a process, from /proc."""
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def server_side_open(pid: int, client: socket.socket) -> bool:
    """Whether process `pid` holds the server end of the IPv4 TCP connection `client`: the
    socket of /proc/net/tcp whose remote end is `client`'s address, among `pid`'s fds."""
    host, port = client.getsockname()[:2]
    a, b, c, d = (int(x) for x in host.split("."))
    remote = f"{d:02X}{c:02X}{b:02X}{a:02X}:{port:04X}"
    with open(f"/proc/{pid}/net/tcp") as f:
        inodes = {f"socket:[{row[9]}]" for row in (line.split() for line in f) if row[2] == remote}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
    return False


def rss(pid: int) -> int:
    """A process's resident memory in bytes, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_counts_at_most(pid: int, fds: int, threads: int, timeout: float = 10.0) -> None:
    """Poll until the process has no more than `fds` fds and `threads` threads."""
    deadline = time.monotonic() + timeout
    while True:
        now = proc_counts(pid)
        if now[0] <= fds and now[1] <= threads:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"fds/threads {now}, expected at most {(fds, threads)}")
        time.sleep(0.05)


def count_matches(srv: Any, pattern: str) -> int:
    return len(re.findall(pattern, srv.log, re.MULTILINE))


def wait_count(srv: Any, pattern: str, n: int, timeout: float = 5.0) -> int:
    """Poll the server log until `pattern` matches at least `n` times; return the count."""
    deadline = time.monotonic() + timeout
    while True:
        got = count_matches(srv, pattern)
        if got >= n:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{pattern!r} matched {got} times, expected {n}; log tail:\n{srv.log[-3000:]}"
            )
        time.sleep(0.02)


def wait_for_log_after(srv: Any, mark: int, pattern: str, timeout: float = 5.0) -> re.Match[str]:
    """Poll until `pattern` matches the server log after its first `mark` characters."""
    rx = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(srv.log, mark)
        if m:
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line matching {pattern!r}; new log:\n{srv.log[mark:]}")
        time.sleep(0.02)


FINDINGS = ("LINT-FINDING", "WSGIWarning", "HTTPWarning", "AssertionError", "panicked")


def assert_no_findings(srv: Any) -> None:
    """The server log holds no validator finding (see tests/apps/hostile_lint.py) and no
    Rust panic."""
    log = srv.log
    found = [f for f in FINDINGS if f in log]
    assert not found, f"{found} in the server log:\n{log[-6000:]}"
