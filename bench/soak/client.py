"""The soak test's client: one process sending a seeded random mix of requests over raw sockets
and checking every answer (status, headers that matter, whole body).

Each client keeps one keep-alive connection for the well-behaved requests and opens a separate
connection for each misbehaving one (half a head, half a body, a response dropped halfway). It
counts requests: every HTTP request sent, pipelined ones included, disconnects included.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

TIMEOUT = 60.0
"""Seconds any socket operation may take (the server's --io-timeout is 60 s)."""
HELLO = b"Hello, World!"
JSON_ANSWER = {"message": "Hello, World!"}
ERROR_BODY = b"Internal Server Error\n"
LETTERS = [bytes([ord("a") + i]) for i in range(26)]
PROGRESS_EVERY = 200
"""Requests between two updates of the shared progress counter."""

# Upload sizes (bytes) and their weights: mostly small, some across the 64 KiB read and drain
# boundaries, a few of 1 MiB.
UPLOAD_SIZES = (0, 1, 100, 1000, 4096, 16384, 65535, 65536, 65537, 300_000, 1024 * 1024)
UPLOAD_WEIGHTS = (4, 4, 10, 10, 8, 6, 2, 2, 2, 2, 1)
READ_SIZES = (0, 1000, 4096, 65536)
"""How the app reads wsgi.input: ?read=N bytes at a time, 0 = read() all at once."""
STREAM_SIZES = (1, 100, 1000, 4096, 16384)

MIX: dict[str, int] = {
    # op: weight (in operations; a pipeline op sends PIPELINE_DEPTH requests)
    "hello": 30,
    "json": 14,
    "echo": 4,
    "upload": 10,
    "upload_chunked": 8,
    "stream": 8,
    "error": 4,
    "stream_error": 2,
    "pipeline": 4,
    "drop_head": 3,
    "drop_body": 3,
    "drop_response": 3,
}
PIPELINE_DEPTH = 4
EXPECTED_FAILURES = ("error", "stream_error", "drop_head", "drop_body", "drop_response")
"""Ops whose answer is a failure on purpose (a 500, a cut connection, no answer at all)."""


class Unexpected(Exception):
    """An answer that is not the one the op expects."""


@dataclass
class Tally:
    """What one client saw; merged across clients by the runner."""

    requests: int = 0
    ok: Counter = field(default_factory=Counter)
    """op -> answers as expected (for the error ops: the expected failure happened)."""
    failures: Counter = field(default_factory=Counter)
    """"op: reason" -> count of unexpected outcomes."""
    examples: dict[str, str] = field(default_factory=dict)
    """"op: reason" -> the first message seen."""
    reconnects: int = 0
    seconds: float = 0.0

    def fail(self, op: str, exc: BaseException) -> None:
        if isinstance(exc, Unexpected):
            reason, message = exc.args[0], ": ".join(str(a) for a in exc.args)
        else:
            reason, message = type(exc).__name__, str(exc) or repr(exc)
        key = f"{op}: {reason}"
        self.failures[key] += 1
        self.examples.setdefault(key, message[:300])

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": dict(self.ok),
            "failures": dict(self.failures),
            "examples": self.examples,
            "reconnects": self.reconnects,
            "seconds": self.seconds,
        }

    @classmethod
    def merge(cls, parts: list[dict[str, Any]]) -> Tally:
        t = cls()
        for p in parts:
            t.requests += p["requests"]
            t.ok.update(p["ok"])
            t.failures.update(p["failures"])
            for k, v in p["examples"].items():
                t.examples.setdefault(k, v)
            t.reconnects += p["reconnects"]
            t.seconds = max(t.seconds, p["seconds"])
        return t


# --- reading answers ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool = True
    """False when the connection ended before the end of a chunked body."""

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


def _read_head(f: Any) -> tuple[int, dict[str, str]]:
    line = f.readline(65537)
    if not line:
        raise ConnectionError("connection closed before the status line")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise Unexpected(f"bad status line {line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline(65537)
        if not line:
            raise ConnectionError("connection closed inside the head")
        if line in (b"\r\n", b"\n"):
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


def _read_exact(f: Any, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ConnectionError(f"connection closed after {len(data)} of {n} body bytes")
    return data


def read_answer(f: Any, head_only: bool = False, allow_cut: bool = False) -> Answer:
    """One response from the buffered reader ``f``. ``allow_cut``: a chunked body the
    server cuts short is returned with ``complete=False`` instead of raising."""
    status, headers = _read_head(f)
    if head_only:
        return Answer(status, headers, b"")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            line = f.readline(1024)
            if not line:
                if allow_cut:
                    return Answer(status, headers, b"".join(parts), complete=False)
                raise ConnectionError("connection closed inside a chunked body")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while f.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return Answer(status, headers, b"".join(parts))
            data = f.read(size + 2)
            if len(data) != size + 2:
                if allow_cut:
                    parts.append(data[:size])
                    return Answer(status, headers, b"".join(parts), complete=False)
                raise ConnectionError("connection closed inside a chunk")
            if data[-2:] != b"\r\n":
                raise Unexpected("chunk not followed by CRLF")
            parts.append(data[:size])
    if "content-length" in headers:
        return Answer(status, headers, _read_exact(f, int(headers["content-length"])))
    return Answer(status, headers, f.read())  # until the server closes


def expect(cond: bool, reason: str, detail: str = "") -> None:
    if not cond:
        raise Unexpected(reason, detail)


def expect_status(ans: Answer, status: int) -> None:
    if ans.status != status:
        raise Unexpected(f"status {ans.status}", ans.body[:200])


# --- the client --------------------------------------------------------------------------------


class Client:
    def __init__(self, host: str, port: int, seed: int, mix: dict[str, int] | None = None):
        mix = mix or MIX
        self.host, self.port = host, port
        self.rng = random.Random(seed)
        self.tally = Tally()
        # the bytes uploads are cut from: random, so a server mixing up bodies is noticed
        self.blob = self.rng.randbytes(max(UPLOAD_SIZES) + 4096)
        self.sock: socket.socket | None = None
        self.f: Any = None
        self.host_header = f"Host: {host}:{port}\r\n".encode()
        self.ops: dict[str, Callable[[], int]] = {name: getattr(self, f"op_{name}") for name in mix}
        self.names = list(mix)
        self.weights = [mix[n] for n in self.names]

    # connections

    def connect(self, rcvbuf: int = 0) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.connect((self.host, self.port))
        except BaseException:
            s.close()
            raise
        return s

    def conn(self) -> tuple[socket.socket, Any]:
        """The keep-alive connection, opened when there is none."""
        if self.sock is None:
            self.sock = self.connect()
            self.f = self.sock.makefile("rb", buffering=256 * 1024)
            self.tally.reconnects += 1
        return self.sock, self.f

    def drop(self) -> None:
        if self.sock is not None:
            self.f.close()
            self.sock.close()
            self.sock = self.f = None

    def exchange(self, request: bytes, **kw: Any) -> Answer:
        sock, f = self.conn()
        sock.sendall(request)
        ans = read_answer(f, **kw)
        if ans.closes or not ans.complete:
            self.drop()
        return ans

    def get(self, target: str, extra: bytes = b"") -> bytes:
        return b"GET " + target.encode() + b" HTTP/1.1\r\n" + self.host_header + extra + b"\r\n"

    def body(self, size: int) -> bytes:
        start = self.rng.randrange(len(self.blob) - size + 1)
        return self.blob[start : start + size]

    # the ops: each returns the number of requests it sent

    def op_hello(self) -> int:
        r = self.rng.random()
        if r < 0.02:  # the client closes: Connection: close
            ans = self.exchange(self.get("/", b"Connection: close\r\n"))
            expect(ans.closes, "no Connection: close")
        elif r < 0.03:  # HTTP/1.0 without keep-alive
            ans = self.exchange(b"GET / HTTP/1.0\r\n" + self.host_header + b"\r\n")
            self.drop()
        else:
            ans = self.exchange(self.get("/"))
        expect_status(ans, 200)
        expect(ans.body == HELLO, "wrong body", repr(ans.body[:100]))
        return 1

    def op_json(self) -> int:
        ans = self.exchange(self.get("/json"))
        expect_status(ans, 200)
        expect(json.loads(ans.body) == JSON_ANSWER, "wrong body", repr(ans.body[:100]))
        return 1

    def op_echo(self) -> int:
        data = self.body(self.rng.randrange(0, 4096))
        req = (
            b"POST /echo HTTP/1.1\r\n"
            + self.host_header
            + b"Content-Type: application/octet-stream\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        ans = self.exchange(req)
        expect_status(ans, 200)
        expect(json.loads(ans.body) == {"len": len(data)}, "wrong body", repr(ans.body[:100]))
        return 1

    def _upload_request(self, data: bytes, chunked: bool) -> bytes:
        read = self.rng.choice(READ_SIZES)
        head = f"POST /upload?read={read} HTTP/1.1\r\n".encode() + self.host_header
        head += b"Content-Type: application/octet-stream\r\n"
        if not chunked:
            return head + f"Content-Length: {len(data)}\r\n\r\n".encode() + data
        parts = [head, b"Transfer-Encoding: chunked\r\n\r\n"]
        pos = 0
        while pos < len(data):
            n = min(len(data) - pos, self.rng.choice((1, 17, 1000, 8192, 65536, 200_000)))
            ext = b";soak=1" if self.rng.random() < 0.05 else b""
            parts += [b"%x" % n, ext, b"\r\n", data[pos : pos + n], b"\r\n"]
            pos += n
        parts.append(b"0\r\nX-Trailer: yes\r\n\r\n" if self.rng.random() < 0.1 else b"0\r\n\r\n")
        return b"".join(parts)

    def _upload(self, chunked: bool) -> int:
        data = self.body(self.rng.choices(UPLOAD_SIZES, UPLOAD_WEIGHTS)[0])
        ans = self.exchange(self._upload_request(data, chunked))
        expect_status(ans, 200)
        want = f"{len(data)} {zlib.crc32(data)}".encode()
        expect(ans.body == want, "wrong length or crc32", f"{ans.body[:100]!r} != {want!r}")
        return 1

    def op_upload(self) -> int:
        return self._upload(chunked=False)

    def op_upload_chunked(self) -> int:
        return self._upload(chunked=True)

    def op_stream(self) -> int:
        n, size = self.rng.randrange(1, 200), self.rng.choice(STREAM_SIZES)
        ans = self.exchange(self.get(f"/stream?n={n}&size={size}"))
        expect_status(ans, 200)
        expect(
            "chunked" in ans.headers.get("transfer-encoding", ""), "not chunked", str(ans.headers)
        )
        want = b"".join(LETTERS[i % 26] * size for i in range(n))
        expect(ans.body == want, "wrong body", f"{len(ans.body)} bytes, {len(want)} expected")
        return 1

    def op_error(self) -> int:
        ans = self.exchange(self.get("/error"))
        expect_status(ans, 500)
        expect(ans.body == ERROR_BODY, "wrong 500 body", repr(ans.body[:100]))
        return 1

    def op_stream_error(self) -> int:
        """The app raises before chunk ``fail``. Before the first chunk nothing is sent yet
        (PEP 3333 sends the head with the first body bytes): a 500. After it the head is out,
        so the server must cut the connection after the chunks already sent, never end the
        body as if it were whole."""
        fail, size = self.rng.randrange(0, 20), self.rng.choice(STREAM_SIZES)
        ans = self.exchange(self.get(f"/stream?n=40&size={size}&fail={fail}"), allow_cut=True)
        if fail == 0:
            expect_status(ans, 500)
            expect(ans.body == ERROR_BODY, "wrong 500 body", repr(ans.body[:100]))
            return 1
        expect_status(ans, 200)
        expect(not ans.complete, "cut stream ended as if whole", f"{len(ans.body)} bytes")
        want = b"".join(LETTERS[i % 26] * size for i in range(fail))
        expect(want.startswith(ans.body), "wrong body before the cut", f"{len(ans.body)} bytes")
        self.drop()
        return 1

    def op_pipeline(self) -> int:
        targets = [self.rng.choice(("/", "/json")) for _ in range(PIPELINE_DEPTH)]
        sock, f = self.conn()
        sock.sendall(b"".join(self.get(t) for t in targets))
        for t in targets:
            ans = read_answer(f)
            expect_status(ans, 200)
            if t == "/":
                expect(ans.body == HELLO, "wrong body", repr(ans.body[:100]))
            else:
                expect(json.loads(ans.body) == JSON_ANSWER, "wrong body", repr(ans.body[:100]))
        return PIPELINE_DEPTH

    def _hang_up(self, s: socket.socket) -> None:
        """Close, half the time with a reset (SO_LINGER 0) instead of a FIN."""
        if self.rng.random() < 0.5:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    def op_drop_head(self) -> int:
        req = self.get("/", b"X-Soak: partial-head\r\nAccept: */*\r\n")
        s = self.connect()
        s.sendall(req[: self.rng.randrange(1, len(req) - 1)])
        self._hang_up(s)
        return 1

    def op_drop_body(self) -> int:
        size = self.rng.choice((1000, 65536, 300_000, 1024 * 1024))
        req = self._upload_request(self.body(size), chunked=self.rng.random() < 0.5)
        head_len = req.index(b"\r\n\r\n") + 4
        s = self.connect()
        s.sendall(req[: self.rng.randrange(head_len, len(req) - 1)])
        if self.rng.random() < 0.5:
            time.sleep(0.001)  # let the app start reading first, sometimes
        self._hang_up(s)
        return 1

    def op_drop_response(self) -> int:
        """A response far larger than the socket buffers, read in part, then hung up on."""
        s = self.connect(rcvbuf=16384)
        try:
            s.sendall(self.get("/stream?n=100000&size=4096"))
            f = s.makefile("rb", buffering=0)
            ans = read_answer(f, head_only=True)
            expect_status(ans, 200)
            got, want = 0, self.rng.randrange(1, 256 * 1024)
            while got < want:
                data = s.recv(65536)
                expect(bool(data), "stream ended early", f"after {got} bytes")
                got += len(data)
            f.close()
        finally:
            self._hang_up(s)
        return 1

    def run(self, quota: int, progress: Any = None, slot: int = 0) -> Tally:
        t0 = time.monotonic()
        reported = 0
        while self.tally.requests < quota:
            name = self.rng.choices(self.names, self.weights)[0]
            if name == "pipeline" and quota - self.tally.requests < PIPELINE_DEPTH:
                name = "hello"
                self.ops.setdefault(name, self.op_hello)
            try:
                sent = self.ops[name]()
                self.tally.ok[name] += 1
            except Exception as exc:  # refused, reset, timeout, a wrong answer: all count
                sent = PIPELINE_DEPTH if name == "pipeline" else 1
                self.tally.fail(name, exc)
                self.drop()
            self.tally.requests += sent
            if progress is not None and self.tally.requests - reported >= PROGRESS_EVERY:
                progress[slot] = self.tally.requests
                reported = self.tally.requests
        self.drop()
        if progress is not None:
            progress[slot] = self.tally.requests
        self.tally.seconds = time.monotonic() - t0
        return self.tally


def client_process(
    host: str,
    port: int,
    seed: int,
    quota: int,
    progress: Any,
    slot: int,
    results: Any,
    mix: dict[str, int] | None = None,
) -> None:
    """Entry point of one client process: run, then put the tally on ``results``."""
    try:
        tally = Client(host, port, seed, mix).run(quota, progress, slot)
        results.put((slot, tally.as_dict()))
    except BaseException as exc:  # a bug in the client itself: report it, never hang the run
        results.put((slot, {"crash": f"{type(exc).__name__}: {exc}"}))
        raise
