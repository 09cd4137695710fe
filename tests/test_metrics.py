"""--metrics-bind: the Prometheus endpoint's counts match the requests sent.

Real processes on loopback: a single process, and a master with 2 workers. A known mix of
requests (GET 200s on keep-alive connections, POST 404s, HEADs, an app error, and bad requests
over raw sockets that the core refuses with 400 and 431) is sent, the endpoint is scraped, and
its text is parsed by a strict parser of the text format 0.0.4 written here: the counts must be
exactly those sent. Also: the gauges (in flight, open connections), worker restarts after
SIGKILL, a --timeout kill and --max-requests recycling with totals that never go back, and an
endpoint that a silent client cannot block.
"""

from __future__ import annotations

import http.client
import math
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import children_of, run_ferrule, wait_until

pytestmark = pytest.mark.timeout(120)

APP = "metrics_app:app"
METRICS_RE = re.compile(r"Metrics at: http://([\d.]+):(\d+)/metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --- a strict parser of the Prometheus text format (0.0.4) --------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"'
SAMPLE_RE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL},?)*)\}})? (\S+)(?: (-?\d+))?$")
LABEL_RE = re.compile(LABEL)
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Exposition:
    """Families (name -> type, help) and samples ((name, labels) -> value) of one scrape."""

    def __init__(self, text: str):
        assert text.endswith("\n"), "the exposition must end with a line feed"
        self.types: dict[str, str] = {}
        self.help: dict[str, str] = {}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.order: list[tuple[str, dict[str, str], float]] = []
        family_done: set[str] = set()
        current = ""
        for line in text[:-1].split("\n"):
            assert line, "no blank lines"
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    assert re.fullmatch(NAME, name), line
                    assert name not in family_done, f"{name}: family split up"
                    if current and current != name:
                        family_done.add(current)
                    current = name
                    if parts[1] == "HELP":
                        assert name not in self.help, f"second HELP for {name}"
                        assert len(parts) == 4 and parts[3].strip(), f"empty HELP: {line}"
                        self.help[name] = parts[3]
                    else:
                        assert name not in self.types, f"second TYPE for {name}"
                        assert len(parts) == 4 and parts[3] in TYPES, line
                        assert not any(self._family(s) == name for s, _ in self.samples), (
                            f"TYPE after samples of {name}"
                        )
                        self.types[name] = parts[3]
                continue
            m = SAMPLE_RE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels_text, value_text = m.group(1), m.group(2) or "", m.group(5)
            labels = dict(LABEL_RE.findall(labels_text))
            assert len(labels) == len(LABEL_RE.findall(labels_text)), f"duplicate label: {line}"
            assert value_text in ("+Inf", "-Inf", "NaN") or re.fullmatch(
                r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value_text
            ), line
            value = float(value_text)
            family = self._family(name)
            assert family in self.types and family in self.help, f"{name}: no TYPE/HELP first"
            assert family == current, f"{name} outside its family's block"
            key = (name, frozenset(labels.items()))
            assert key not in self.samples, f"duplicate series: {line}"
            self.samples[key] = value
            self.order.append((name, labels, value))

    def _family(self, sample: str) -> str:
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample[: -len(suffix)]
            if sample.endswith(suffix) and self.types.get(base) == "histogram":
                return base
        return sample

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def requests(self) -> dict[tuple[str, str], int]:
        out = {}
        for labels, v in self.series("ferrule_requests_total").items():
            d = dict(labels)
            assert set(d) == {"method", "status"}, d
            assert re.fullmatch(r"[1-9]\d\d", d["status"]), d
            assert v == int(v) and v > 0, v
            out[(d["method"], d["status"])] = int(v)
        return out

    def check_histogram(self, name: str) -> int:
        """Buckets cumulative, `le` ascending and ending at +Inf == _count; returns _count."""
        assert self.types[name] == "histogram"
        buckets = [(labels["le"], v) for n, labels, v in self.order if n == f"{name}_bucket"]
        assert buckets and buckets[-1][0] == "+Inf", buckets
        bounds = [float(le) for le, _ in buckets]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), bounds
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"buckets not cumulative: {counts}"
        count = self.value(f"{name}_count")
        assert counts[-1] == count, (counts[-1], count)
        assert self.value(f"{name}_sum") >= 0
        return int(count)


def scrape(addr: tuple[str, int], path: str = "/metrics") -> Exposition:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8")
        assert resp.status == 200, body
        assert resp.getheader("Content-Type") == CONTENT_TYPE
        return Exposition(body)
    finally:
        conn.close()


def scrape_until(addr, predicate, what: str, timeout: float = 10.0) -> Exposition:
    """Scrape until `predicate(exposition)` holds (counts land just after the response)."""
    last: list[Exposition] = []

    def check():
        last[:] = [scrape(addr)]
        return predicate(last[0])

    try:
        wait_until(check, timeout=timeout, interval=0.05, what=what)
    except AssertionError:
        raise AssertionError(f"{what}; last scrape: {last[0].samples if last else None}") from None
    return last[0]


# --- helpers -------------------------------------------------------------------------------


def start(start_server, *args: str, workers: int = 1):
    mode = ["-w", str(workers)] if workers > 1 else []
    srv = start_server(*mode, "--metrics-bind", "127.0.0.1:0", "--keep-alive", "60", *args, APP)
    if workers > 1:
        srv.wait_for_log(r"Ready: \d+ workers serving")
    m = srv.wait_for_log(METRICS_RE.pattern)
    return srv, (m.group(1), int(m.group(2)))


def raw(srv, data: bytes) -> bytes:
    """Send `data` on a new connection; everything the server answers before it closes."""
    with srv.connect() as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def keep_alive_requests(srv, method: str, path: str, n: int, body: bytes | None = None) -> None:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    try:
        for _ in range(n):
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            resp.read()
    finally:
        conn.close()


def send_mix(srv) -> dict[tuple[str, str], int]:
    """The known mix; returns the requests_total it must produce."""
    with ThreadPoolExecutor(6) as pool:
        # 300 GET 200s on 6 keep-alive connections, 50 POST 404s on 5, 20 HEADs on 2.
        jobs = [pool.submit(keep_alive_requests, srv, "GET", "/", 50) for _ in range(6)]
        jobs += [
            pool.submit(keep_alive_requests, srv, "POST", "/missing", 10, b"x=1") for _ in range(5)
        ]
        jobs += [pool.submit(keep_alive_requests, srv, "HEAD", "/", 10) for _ in range(2)]
        for job in jobs:
            job.result()
    assert (
        http_status(raw(srv, b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 500
    )
    for _ in range(10):  # a header line without a colon: 400, method GET
        assert http_status(raw(srv, b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")) == 400
    for _ in range(10):  # not HTTP at all: 400, method "other"
        assert http_status(raw(srv, b"\x16\x03\x01 hello\r\n\r\n")) == 400
    for _ in range(5):  # a field over limit_request_field_size: 431, method PUT
        big = b"PUT /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n"
        assert http_status(raw(srv, big)) == 431
    return {
        ("GET", "200"): 300,
        ("POST", "404"): 50,
        ("HEAD", "200"): 20,
        ("GET", "500"): 1,
        ("GET", "400"): 10,
        ("other", "400"): 10,
        ("PUT", "431"): 5,
    }


def http_status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1."), response[:100]
    return int(response.split(b" ", 2)[1])


def check_format(exp: Exposition, master: bool) -> None:
    expected = {
        "ferrule_requests_total": "counter",
        "ferrule_request_duration_seconds": "histogram",
        "ferrule_requests_in_flight": "gauge",
        "ferrule_connections_open": "gauge",
    }
    if master:
        expected |= {"ferrule_worker_restarts_total": "counter", "ferrule_workers": "gauge"}
    assert exp.types == expected
    assert set(exp.help) == set(expected)
    exp.check_histogram("ferrule_request_duration_seconds")
    bounds = [
        float(le)
        for n, labels, _ in exp.order
        if n == "ferrule_request_duration_seconds_bucket"
        for le in [labels["le"]]
    ]
    assert bounds[0] == 0.001 and bounds[-2] == 10 and math.isinf(bounds[-1])


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2], ids=["single-process", "2-workers"])
def test_counts_match_the_requests_sent(start_server, workers):
    srv, addr = start(start_server, workers=workers)
    before = scrape(addr)
    check_format(before, master=workers > 1)
    assert before.requests() == {}
    assert before.check_histogram("ferrule_request_duration_seconds") == 0

    expected = send_mix(srv)
    total = sum(expected.values())
    exp = scrape_until(
        addr,
        lambda e: (
            e.requests() == expected
            and e.value("ferrule_requests_in_flight") == 0
            and e.value("ferrule_connections_open") == 0
        ),
        "requests_total equal to the mix sent, at rest",
    )
    assert exp.requests() == expected  # exactly, per (method, status)
    check_format(exp, master=workers > 1)
    assert exp.check_histogram("ferrule_request_duration_seconds") == total
    assert exp.value("ferrule_request_duration_seconds_sum") > 0
    if workers > 1:
        assert exp.value("ferrule_workers") == 2
        assert {
            dict(k)["reason"]: v for k, v in exp.series("ferrule_worker_restarts_total").items()
        } == {
            "died": 0,
            "timeout": 0,
            "max_requests": 0,
        }
    else:
        assert "ferrule_workers" not in exp.types
    # Scraping is not a request of the application's, and any path answers.
    assert scrape(addr, "/anything").requests() == expected


@pytest.mark.parametrize("workers", [1, 2], ids=["single-process", "2-workers"])
def test_in_flight_and_open_connections(start_server, workers):
    srv, addr = start(start_server, "--threads", "4", workers=workers)
    held = []
    try:
        for _ in range(5):  # served once, then held open (keep-alive)
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
            conn.request("GET", "/")
            conn.getresponse().read()
            held.append(conn)
        scrape_until(
            addr,
            lambda e: (
                e.value("ferrule_connections_open") == 5
                and e.value("ferrule_requests_in_flight") == 0
            ),
            "5 open connections, nothing in flight",
        )
        result: list[int] = []
        slow = threading.Thread(
            target=lambda: result.append(
                http_status(
                    raw(srv, b"GET /slow?1.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                )
            )
        )
        slow.start()
        srv.wait_for_log("metrics_app: slow request started")
        exp = scrape(addr)
        assert exp.value("ferrule_requests_in_flight") == 1
        assert exp.value("ferrule_connections_open") == 6
        slow.join(10)
        assert result == [200]
        exp = scrape_until(
            addr,
            lambda e: (
                e.value("ferrule_requests_in_flight") == 0
                and e.value("ferrule_connections_open") == 5
            ),
            "the slow request done",
        )
        assert exp.requests() == {("GET", "200"): 6}
        slow_bucket = exp.value("ferrule_request_duration_seconds_bucket", le="2.5")
        fast_bucket = exp.value("ferrule_request_duration_seconds_bucket", le="1.0")
        assert (fast_bucket, slow_bucket) == (5, 6), "the 1.5 s request is in the 2.5 s bucket"
        assert exp.value("ferrule_request_duration_seconds_sum") >= 1.5
    finally:
        for conn in held:
            conn.close()
    scrape_until(addr, lambda e: e.value("ferrule_connections_open") == 0, "connections closed")


def test_worker_restarts_and_totals_never_go_back(start_server):
    srv, addr = start(start_server, "--threads", "2", workers=2)
    keep_alive_requests(srv, "GET", "/", 100)
    scrape_until(addr, lambda e: e.requests() == {("GET", "200"): 100}, "100 GETs counted")

    # Scrape continuously while a worker is killed and replaced: nothing may go back.
    history: list[Exposition] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            history.append(scrape(addr))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        wait_until(lambda: len(history) >= 5, what="scrapes before the kill")
        victim = sorted(children_of(srv.proc.pid))[0]
        os.kill(victim, signal.SIGKILL)
        srv.wait_for_log(rf"Worker {victim} died \(killed by SIGKILL\); replacing it")
        wait_until(
            lambda: len(children_of(srv.proc.pid)) == 2 and victim not in children_of(srv.proc.pid),
            what="a replacement worker",
        )
        keep_alive_requests(srv, "GET", "/", 50)
        exp = scrape_until(
            addr, lambda e: e.requests() == {("GET", "200"): 150}, "150 GETs after the restart"
        )
        seen = len(history)
        wait_until(lambda: len(history) >= seen + 5, what="scrapes after the restart")
    finally:
        stop.set()
        watcher.join(10)
    assert exp.value("ferrule_worker_restarts_total", reason="died") == 1
    assert exp.value("ferrule_workers") == 2
    assert exp.check_histogram("ferrule_request_duration_seconds") == 150
    assert len(history) >= 10
    counters = ("ferrule_requests_total", "ferrule_request_duration_seconds_bucket")
    for earlier, later in zip(history, history[1:]):
        for key, value in earlier.samples.items():
            if key[0] in counters or key[0].endswith("_count"):
                assert later.samples.get(key, 0) >= value, f"{key} went back: {value} ->"


def test_max_requests_recycling_keeps_the_counts(start_server):
    srv, addr = start(start_server, "--master", "--max-requests", "20", "--threads", "2")
    # 70 requests: workers 1-3 serve 20 each (one more, perhaps, on a connection accepted as
    # they stop), the 4th the rest, fewer than 20: exactly 3 recycled.
    for _ in range(5):  # a recycled worker closes its connection: http.client reconnects
        keep_alive_requests(srv, "GET", "/", 12)
        keep_alive_requests(srv, "POST", "/missing", 2, b"x")
    exp = scrape_until(
        addr,
        lambda e: (
            e.requests() == {("GET", "200"): 60, ("POST", "404"): 10}
            and e.value("ferrule_worker_restarts_total", reason="max_requests") == 3
        ),
        "70 requests counted over 3 recycled workers",
    )
    assert exp.value("ferrule_worker_restarts_total", reason="died") == 0
    assert exp.check_histogram("ferrule_request_duration_seconds") == 70
    assert exp.value("ferrule_workers") == 1


def test_timeout_kill_counts_as_a_timeout_restart(start_server):
    srv, addr = start(start_server, "--master", "--timeout", "1", "--threads", "2")
    keep_alive_requests(srv, "GET", "/", 3)
    with pytest.raises((http.client.HTTPException, OSError)):
        keep_alive_requests(srv, "GET", "/slow?10", 1)  # killed mid-request
    srv.wait_for_log(r"Worker timeout")
    exp = scrape_until(
        addr,
        lambda e: (
            e.value("ferrule_worker_restarts_total", reason="timeout") == 1
            and e.value("ferrule_workers") == 1
        ),
        "a timeout restart",
    )
    # The killed request never finished: not counted, and no longer in flight.
    assert exp.requests() == {("GET", "200"): 3}
    assert exp.value("ferrule_requests_in_flight") == 0


@pytest.mark.parametrize("workers", [1, 2], ids=["single-process", "2-workers"])
def test_a_silent_scraper_blocks_nothing(start_server, workers):
    srv, addr = start(start_server, workers=workers)
    silent = [socket.create_connection(addr, timeout=10) for _ in range(3)]
    partial = socket.create_connection(addr, timeout=10)
    partial.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    try:
        started = time.monotonic()
        assert scrape(addr).requests() == {}
        keep_alive_requests(srv, "GET", "/", 3)
        scrape_until(addr, lambda e: e.requests() == {("GET", "200"): 3}, "3 GETs")
        assert time.monotonic() - started < 3
        # HEAD answers the head only; other methods are refused.
        head = raw_addr(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        assert raw_addr(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 405 "
        )
        # The silent ones are closed after the endpoint's client timeout (5 s).
        partial.settimeout(10)
        assert partial.recv(100) == b""
        for sock in silent:
            sock.settimeout(10)
            assert sock.recv(100) == b""
    finally:
        for sock in [*silent, partial]:
            sock.close()


def raw_addr(addr, data: bytes) -> bytes:
    with socket.create_connection(addr, timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_bad_metrics_bind_is_a_usage_error(tmp_path):
    proc = run_ferrule("--metrics-bind", "127.0.0.1:notaport", APP, cwd=tmp_path)
    assert proc.returncode == 2
    assert "--metrics-bind" in proc.stderr


def test_metrics_port_in_use_fails_to_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_ferrule(
            "--bind", "127.0.0.1:0", "--metrics-bind", f"127.0.0.1:{port}", APP, cwd=tmp_path
        )
    assert proc.returncode == 1, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr
