"""Prometheus metrics (``--metrics-bind``): the text exposition and the endpoint serving it.

The Rust core counts (src/server/metrics.rs): each process keeps its counters in atomics,
and a worker keeps them in its slot of the heartbeat file shared with the master
(``ferrule.workers.heartbeat``). This module turns those numbers into Prometheus text format
0.0.4 and serves it:

- with a master, the master serves it from its select loop (``Endpoint`` is non-blocking and
  bounded: no thread before fork, a slow client never holds up the loop). ``Totals`` adds up
  the live workers' regions at each scrape, plus the last values of every worker that exited
  (folded in when it is reaped), so totals never go back when a worker is replaced;
- a single process serves it from a daemon thread (``serve_in_thread``), reading
  ``_ferrule.Server.metrics()``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from ferrule import logs, sockets

log = logging.getLogger(logs.ERROR_LOGGER)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RESTART_REASONS = ("died", "timeout", "max_requests")
"""``reason`` label values of ``ferrule_worker_restarts_total``."""

MAX_CLIENTS = 16
"""Scrape connections served at once; more are closed at once."""
CLIENT_TIMEOUT = 5.0
"""Seconds a scrape connection gets to send its request and take the response."""
MAX_REQUEST = 8192
"""Bytes of request head read at most."""


@dataclass
class Counts:
    """One process's numbers (or a sum of them), as ``_ferrule`` reports them."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    duration_bounds: list[float] = field(default_factory=list)
    duration_buckets: list[int] = field(default_factory=list)
    """Per bucket, not cumulative; the last one is +Inf."""
    duration_sum_ns: int = 0
    in_flight: int = 0
    connections: int = 0

    @classmethod
    def from_core(cls, d: Mapping[str, Any]) -> Counts:
        return cls(
            requests=dict(d["requests"]),
            duration_bounds=list(d["duration_bounds"]),
            duration_buckets=list(d["duration_buckets"]),
            duration_sum_ns=int(d["duration_sum_ns"]),
            in_flight=int(d["in_flight"]),
            connections=int(d["connections"]),
        )

    def add(self, other: Counts, gauges: bool = True) -> None:
        """Add ``other``'s counters (and, with ``gauges``, its gauges) to these."""
        for key, n in other.requests.items():
            self.requests[key] = self.requests.get(key, 0) + n
        if not self.duration_bounds:
            self.duration_bounds = list(other.duration_bounds)
            self.duration_buckets = [0] * len(other.duration_buckets)
        for i, n in enumerate(other.duration_buckets):
            self.duration_buckets[i] += n
        self.duration_sum_ns += other.duration_sum_ns
        if gauges:
            self.in_flight += other.in_flight
            self.connections += other.connections

    def copy(self) -> Counts:
        return Counts(
            dict(self.requests),
            list(self.duration_bounds),
            list(self.duration_buckets),
            self.duration_sum_ns,
            self.in_flight,
            self.connections,
        )


@dataclass
class Supervision:
    """What only a master knows: its workers, and how many it replaced."""

    workers: int
    restarts: Mapping[str, int]


def _float(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def exposition(counts: Counts, supervision: Supervision | None = None) -> str:
    """The Prometheus text format (0.0.4) for ``counts``."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family(
        "ferrule_requests_total",
        "counter",
        "Requests answered, by method (standard methods, else other) and status code; "
        "requests refused before the application (400, 408, 413, 431...) included.",
    )
    for (method, status), n in sorted(counts.requests.items()):
        out.append(f'ferrule_requests_total{{method="{method}",status="{status}"}} {n}')
    family(
        "ferrule_request_duration_seconds",
        "histogram",
        "Time from a parsed request head to its response written; refused requests count as 0.",
    )
    cumulative = 0
    bounds = [*counts.duration_bounds, math.inf]
    for le, n in zip(bounds, counts.duration_buckets):
        cumulative += n
        out.append(f'ferrule_request_duration_seconds_bucket{{le="{_float(le)}"}} {cumulative}')
    out.append(f"ferrule_request_duration_seconds_sum {_float(counts.duration_sum_ns / 1e9)}")
    out.append(f"ferrule_request_duration_seconds_count {cumulative}")
    family(
        "ferrule_requests_in_flight",
        "gauge",
        "Requests admitted whose response is not finished yet.",
    )
    out.append(f"ferrule_requests_in_flight {counts.in_flight}")
    family("ferrule_connections_open", "gauge", "Open client connections.")
    out.append(f"ferrule_connections_open {counts.connections}")
    if supervision is not None:
        family(
            "ferrule_worker_restarts_total",
            "counter",
            "Workers the master replaced: reason died (exited or killed unexpectedly), "
            "timeout (killed by worker_timeout), max_requests (recycled); reloads and "
            "scaling are not counted.",
        )
        for reason in RESTART_REASONS:
            n = supervision.restarts.get(reason, 0)
            out.append(f'ferrule_worker_restarts_total{{reason="{reason}"}} {n}')
        family("ferrule_workers", "gauge", "Worker processes running.")
        out.append(f"ferrule_workers {supervision.workers}")
    return "\n".join(out) + "\n"


class Totals:
    """The master's view: workers that exited, folded in; live ones read at each scrape."""

    def __init__(self) -> None:
        self.retired = Counts()
        self.restarts = dict.fromkeys(RESTART_REASONS, 0)

    def fold(self, last: Counts) -> None:
        """Keep an exited worker's counters (its gauges no longer mean anything)."""
        self.retired.add(last, gauges=False)

    def restarted(self, reason: str) -> None:
        self.restarts[reason] = self.restarts.get(reason, 0) + 1

    def text(self, live: Iterable[Counts], workers: int) -> str:
        total = self.retired.copy()
        for counts in live:
            total.add(counts)
        return exposition(total, Supervision(workers, self.restarts))


# --- the endpoint ------------------------------------------------------------------------


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    received: bytes = b""
    reply: bytes | None = None


class Endpoint:
    """A minimal HTTP/1.x server for scrapes, driven by the caller's ``select()``.

    Every socket is non-blocking: ``step()`` does what is possible now and returns. A client
    gets ``CLIENT_TIMEOUT`` to send its request head and take the answer, which is computed
    by ``collect()`` once the head is in, for any path (``GET``; ``HEAD`` gets the head only);
    then the connection closes. At most ``MAX_CLIENTS`` are served at once.
    """

    def __init__(self, listener: sockets.Listener, collect: Callable[[], str]):
        self.listener = listener
        self.collect = collect
        listener.sock.setblocking(False)
        self._clients: dict[int, _Client] = {}

    @property
    def url(self) -> str:
        return self.listener.url + ("" if self.listener.url.startswith("unix:") else "/metrics")

    @property
    def busy(self) -> bool:
        """Clients are connected (``step()`` must run by their deadlines)."""
        return bool(self._clients)

    def read_fds(self) -> list[int]:
        fds = [c.sock.fileno() for c in self._clients.values() if c.reply is None]
        return [self.listener.fileno(), *fds]

    def write_fds(self) -> list[int]:
        return [c.sock.fileno() for c in self._clients.values() if c.reply is not None]

    def close_in_child(self) -> None:
        """A forked worker drops its copies of the sockets (the master keeps serving them;
        a unix socket's file stays)."""
        for c in self._clients.values():
            c.sock.close()
        self._clients.clear()
        self.listener.close_fd()

    def step(self, readable: Iterable[int], writable: Iterable[int]) -> None:
        """Serve what ``select()`` reported ready, then drop clients past their deadline."""
        now = time.monotonic()
        ready = set(readable) | set(writable)
        if self.listener.fileno() in ready:
            self._accept(now)
        for fd in list(self._clients):
            if fd in ready:
                self._serve(fd)
        for fd, c in list(self._clients.items()):
            if now >= c.deadline:
                self._drop(fd)

    def close(self) -> None:
        for fd in list(self._clients):
            self._drop(fd)
        self.listener.close()

    def _accept(self, now: float) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self.listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again on the next wake-up
                if exc.errno not in (errno.ECONNABORTED, errno.EPROTO):
                    log.warning("Metrics endpoint: accept() failed: %s", exc)
                    return
                continue
            if len(self._clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            self._clients[sock.fileno()] = _Client(sock, now + CLIENT_TIMEOUT)

    def _serve(self, fd: int) -> None:
        c = self._clients[fd]
        try:
            if c.reply is None:
                data = c.sock.recv(4096)
                if not data:
                    self._drop(fd)
                    return
                c.received += data
                end = _head_end(c.received)
                if end < 0 and len(c.received) < MAX_REQUEST:
                    return
                c.reply = self._reply(c.received if end >= 0 else b"")
            sent = c.sock.send(c.reply)
            c.reply = c.reply[sent:]
            if not c.reply:
                self._drop(fd)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)

    def _reply(self, head: bytes) -> bytes:
        method = head.split(b" ", 1)[0]
        if not head:
            return _response("431 Request Header Fields Too Large", b"request head too large\n")
        if method not in (b"GET", b"HEAD"):
            return _response("405 Method Not Allowed", b"GET or HEAD\n", b"Allow: GET, HEAD\r\n")
        try:
            body = self.collect().encode("utf-8")
        except Exception:
            log.exception("Metrics endpoint: could not collect the metrics")
            return _response("500 Internal Server Error", b"could not collect the metrics\n")
        return _response("200 OK", body, head_only=method == b"HEAD", content_type=CONTENT_TYPE)

    def _drop(self, fd: int) -> None:
        c = self._clients.pop(fd, None)
        if c is not None:
            c.sock.close()


def _head_end(data: bytes) -> int:
    """Where the request head ends (after its blank line), or -1."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = data.find(sep)
        if i >= 0:
            return i + len(sep)
    return -1


def _response(
    status: str,
    body: bytes,
    extra: bytes = b"",
    head_only: bool = False,
    content_type: str = "text/plain; charset=utf-8",
) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode("latin-1")
    return head + extra + b"\r\n" + (b"" if head_only else body)


def open_endpoint(spec: str, collect: Callable[[], str]) -> Endpoint:
    """Bind ``metrics_bind`` (raises ``sockets.BindError``) and log where it serves."""
    listener = sockets.open_listener(sockets.parse_bind(spec), backlog=64)
    endpoint = Endpoint(listener, collect)
    log.info("Metrics at: %s", endpoint.url)
    return endpoint


@contextlib.contextmanager
def serve_in_thread(spec: str | None, core_server: Any) -> Iterator[None]:
    """A single process (no master): serve ``core_server.metrics()`` from a daemon thread
    while the block runs."""
    if spec is None:
        yield
        return
    endpoint = open_endpoint(spec, lambda: exposition(Counts.from_core(core_server.metrics())))
    wake_r, wake_w = socket.socketpair()
    done = threading.Event()

    def loop() -> None:
        # Asleep until a scrape or the stop; ticks only while clients have deadlines.
        while not done.is_set():
            timeout = CLIENT_TIMEOUT / 10 if endpoint.busy else None
            try:
                r, w, _ = select.select(
                    [*endpoint.read_fds(), wake_r.fileno()], endpoint.write_fds(), [], timeout
                )
            except InterruptedError:
                continue
            endpoint.step(r, w)

    thread = threading.Thread(target=loop, name="ferrule-metrics", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        with contextlib.suppress(OSError):
            wake_w.send(b"x")
        thread.join(2)
        endpoint.close()
        wake_r.close()
        wake_w.close()
