"""ferrule behind real proxies from Debian (issue 7): nginx and HAProxy, started by the tests
themselves on loopback (tests/proxies.py explains how, and how their ports are picked).

- nginx as a reverse proxy over TCP and over a unix socket, with keep-alive upstream
  connections: a bounded mixed load (GET, POST bodies up to 68 KiB, chunked streamed
  responses) through nginx has 0 errors, every body checked, and ferrule accepts far fewer
  connections than it serves requests.
- nginx with X-Forwarded-For, trusted and not; HAProxy with send-proxy-v2 (PROXY protocol).
- HAProxy rolling restart: two ferrule instances are restarted one at a time (TERM, wait for
  exit 0, start again on the same address) during a bounded load run, with 0 failed requests.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import threading
import time

import pytest
from conftest import Load, get, wait_until
from proxies import Proxies, upstream_address

pytestmark = pytest.mark.timeout(90)

APP = "proxy_app:app"


@pytest.fixture
def proxies(tmp_path):
    with Proxies(tmp_path) as started:
        yield started


# --- the expected answers of tests/apps/proxy_app.py, written out independently ---------------


def item_body(n: int, pid: int) -> bytes:
    filler = b"0123456789abcdefghijklmnopqrstuvwxyz" * 28
    return f"item {n} pid={pid} ".encode() + filler[: n % 997]


def stream_body(n: int) -> bytes:
    return b"".join(f"line {i} of {n}\n".encode() for i in range(n))


class MixedLoad:
    """`clients` threads, each on its own keep-alive connection, send requests 0, 1, 2, ...
    until `total` were sent or `seconds` passed. Request i is, by i % 4: GET /item?i, POST
    /echo with i * 7919 % 70000 random bytes, GET /stream?(i % 300 + 1) (chunked), GET
    /item?i. Every answer is checked byte for byte; an exception, a status other than 200 or
    a wrong body is a failure (and the client opens a new connection)."""

    def __init__(self, host: str, port: int, clients: int, total: int, seconds: float, pid: int):
        self.host, self.port, self.pid = host, port, pid
        self.clients, self.total, self.seconds = clients, total, seconds
        self.ok = 0
        self.failures: list[str] = []
        self.unchunked_streams = 0
        self._next = 0
        self._lock = threading.Lock()

    def run(self) -> float:
        """Run the load to its bound; the seconds it took."""
        started = time.monotonic()
        self._deadline = started + self.seconds
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.seconds + 15)
        return time.monotonic() - started

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while time.monotonic() < self._deadline:
            with self._lock:
                if self._next >= self.total:
                    break
                i = self._next
                self._next += 1
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                self._request(conn, i)
            except Exception as exc:  # every failure counts: reset, timeout, status, body
                with self._lock:
                    self.failures.append(f"request {i}: {exc!r}")
                conn.close()
                conn = None
                continue
            with self._lock:
                self.ok += 1
        if conn is not None:
            conn.close()

    def _request(self, conn: http.client.HTTPConnection, i: int) -> None:
        kind = i % 4
        body = None
        headers = {}
        if kind == 1:
            method, target = "POST", "/echo"
            body = random.Random(i).randbytes(i * 7919 % 70000)
            headers["Content-Type"] = "application/octet-stream"
            expected = f"echo {len(body)} ".encode() + body
        elif kind == 2:
            n = i % 300 + 1
            method, target, expected = "GET", f"/stream?{n}", stream_body(n)
        else:
            method, target, expected = "GET", f"/item?{i}", item_body(i, self.pid)
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200 or data != expected:
            raise AssertionError(
                f"{method} {target}: HTTP {resp.status}, {len(data)} bytes {data[:60]!r}..., "
                f"expected {len(expected)} bytes {expected[:60]!r}..."
            )
        if kind == 2 and not resp.chunked:
            with self._lock:
                self.unchunked_streams += 1


# --- nginx --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_nginx_keepalive_upstream_load_has_no_error(start_server, proxies, transport):
    if transport == "unix":
        path = proxies.socket_path("ferrule.sock")
        srv = start_server("--bind", f"unix:{path}", APP, bind=False)
    else:
        srv = start_server(APP)
    nginx = proxies.nginx([upstream_address(srv)], keepalive=16)

    total = 3000
    load = MixedLoad(nginx.host, nginx.port, clients=4, total=total, seconds=30, pid=srv.proc.pid)
    took = load.run()

    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:10]}"
    assert load.ok == total, f"only {load.ok} of {total} requests within {took:.1f} s"
    assert load.unchunked_streams == 0  # nginx relays a streamed body chunked to HTTP/1.1 clients
    assert nginx.errors == [], "\n".join(nginx.errors[:20])
    assert "Traceback" not in srv.log, srv.log[-3000:]

    # nginx saw every request answered by ferrule, and the streamed answers came chunked.
    # (POST bodies above 16 KiB went through nginx's temp files.)
    entries = wait_until(
        lambda: len(e := nginx.access_entries()) >= total and e, what="nginx's access log"
    )
    assert len(entries) == total
    assert {(e["status"], e["upstream_status"]) for e in entries} == {("200", "200")}
    streamed = [e for e in entries if e["uri"].startswith("/stream")]
    assert len(streamed) == total // 4
    assert {e["upstream_te"] for e in streamed} == {"chunked"}

    # Keep-alive upstream: ferrule served every request on a handful of connections. `sockets`
    # bounds the connections ferrule accepted from above (see proxy_app), the listener included.
    status, body = get(nginx.host, nginx.port, "/conns")
    assert status == 200, body
    conns = json.loads(body)
    assert conns["requests"] == total + 1
    assert conns["sockets"] <= total // 100, conns
    if transport == "tcp":  # distinct client ports seen: a lower bound of the same count
        assert 1 <= conns["remote_ports"] <= conns["sockets"], conns


# --- HAProxy ------------------------------------------------------------------------------

# The backend of the rolling-restart test, and why each line is there.
ROLLING_BACKEND = [
    "balance roundrobin",
    # Health checks every 100 ms on /health: a stopped instance is marked DOWN after one failed
    # check and UP again after one good one, so the restart window is short...
    "option httpchk",
    "http-check send meth GET uri /health ver HTTP/1.1 hdr Host haproxy",
    "http-check expect status 200",
    "default-server check inter 100ms fall 1 rise 1",
    # ...but requests still arrive in it. A connection refused by the stopped instance is
    # retried (retries 3), each retry on the other server (redispatch 1: every retry, and
    # redispatched retries skip HAProxy's one-second turn-around delay).
    "retries 3",
    "option redispatch 1",
    # One server connection per request: HAProxy never sends a request on an idle
    # keep-alive connection that the stopping instance is closing at that very moment (a
    # failure retry-on conn-failure cannot retry, since the request was sent). Client
    # connections to HAProxy stay keep-alive.
    "option http-server-close",
    # Deliberately not "retry-on empty-response": it would replay requests an instance may
    # have run, and would hide the very failure this test is for, a stopping server that lets
    # connections in and closes them unanswered. Stopping must refuse new connections.
]


def test_haproxy_rolling_restart_loses_no_request(start_server, proxies):
    ports = {name: proxies.reserve_port() for name in ("a", "b")}

    def start(name: str):
        bind = f"127.0.0.1:{ports[name].port}"
        return start_server("--bind", bind, "--graceful-timeout", "3", APP, bind=False)

    servers = {name: start(name) for name in ports}
    haproxy = proxies.haproxy(
        {name: port.address for name, port in ports.items()}, backend=ROLLING_BACKEND
    )
    for name in servers:
        haproxy.wait_server_up(name)

    def served_by(pid: int) -> int:
        return load.bodies.count(f"pid={pid}")

    restarted = {}
    with Load(haproxy.host, haproxy.port, clients=4, total=20000, seconds=30) as load:
        wait_until(lambda: load.count >= 200, what="200 requests through HAProxy")
        for name in ("a", "b"):
            old = servers[name]
            old.signal(signal.SIGTERM)
            assert old.proc.wait(15) == 0, old.log
            servers[name] = new = start(name)
            restarted[name] = new.proc.pid
            haproxy.wait_server_up(name)
            wait_until(
                lambda pid=new.proc.pid: served_by(pid) >= 50,
                what=f"the restarted instance {name} serving through HAProxy",
            )
        load.stop()

    assert load.failures == [], (
        f"{len(load.failures)} of {load.count} failed: {load.failures[:10]}\n"
        + "\n".join(line for line in haproxy.log_lines() if " 200 " not in line)[:5000]
    )
    for name, pid in restarted.items():
        assert served_by(pid) >= 50, f"{name} (pid {pid}) after its restart"
    # HAProxy logs a request once its answer is sent, and drops log lines rather than block
    # when its stdout pipe is full (seen in CI): read the log once it stops growing, and judge
    # the lines it has. (The clients' own count above is the test of "0 failed".)
    seen: list[int] = []

    def settled() -> list[str]:
        lines = haproxy.log_lines()
        seen.append(len(lines))
        return lines if len(seen) > 25 and seen[-25] == len(lines) > 0 else []

    lines = wait_until(settled, timeout=15, interval=0.02, what="HAProxy's log to settle")
    assert not [line for line in lines if " 200 " not in line], lines[:20]
    # The restarts did happen under load: HAProxy retried requests refused by a stopped
    # instance on the other one (the log's retries field is "+N" when it redispatched).
    assert any(line.split()[3].startswith("+") for line in lines), lines[:20]


# --- the client's address through the proxies -----------------------------------------------

CLIENT_IP = "127.0.0.2"  # the test's client, a loopback address other than the proxies' own


def ask_from_client(host: str, port: int, headers: dict[str, str] | None = None) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(CLIENT_IP, 0))
    try:
        conn.request("GET", "/", headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return {**json.loads(body), "client_port": str(conn.sock.getsockname()[1])}
    finally:
        conn.close()


NGINX_FORWARDING = (
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
    "        proxy_set_header X-Forwarded-Proto $scheme;"
)


@pytest.mark.parametrize("trusted", [True, False], ids=["nginx-trusted", "nginx-not-trusted"])
def test_nginx_x_forwarded_for_is_believed_only_from_a_trusted_nginx(
    start_server, proxies, trusted
):
    allow = "127.0.0.1" if trusted else "10.9.9.9"
    srv = start_server("--forwarded-allow-ips", allow, "forwarded_app:app")
    nginx = proxies.nginx([upstream_address(srv)], location=NGINX_FORWARDING)
    got = ask_from_client(nginx.host, nginx.port)
    assert got["HTTP_X_FORWARDED_FOR"] == CLIENT_IP
    assert got["REMOTE_ADDR"] == (CLIENT_IP if trusted else "127.0.0.1")
    # A client's own X-Forwarded-For is kept in the chain but never believed.
    got = ask_from_client(nginx.host, nginx.port, {"X-Forwarded-For": "6.6.6.6"})
    assert got["HTTP_X_FORWARDED_FOR"] == f"6.6.6.6, {CLIENT_IP}"
    assert got["REMOTE_ADDR"] == (CLIENT_IP if trusted else "127.0.0.1")


def test_haproxy_send_proxy_v2_gives_the_client_address(start_server, proxies):
    srv = start_server("--proxy-protocol", "forwarded_app:app")
    port = srv.port
    haproxy = proxies.haproxy(
        {"only": f"127.0.0.1:{port}"}, mode="tcp", server_options="send-proxy-v2"
    )
    for _ in range(3):
        got = ask_from_client(haproxy.host, haproxy.port)
        assert (got["REMOTE_ADDR"], got["REMOTE_PORT"]) == (CLIENT_IP, got["client_port"])
    assert "Closed a connection" not in srv.log
