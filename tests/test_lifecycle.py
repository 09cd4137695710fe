"""Stopping one server process: graceful on the first SIGINT/SIGTERM (running requests
finish, idle connections close), fast on a second signal during the graceful wait."""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

TIMEOUT = 10.0


def get(srv, seconds: float) -> requests.Response:
    return requests.get(f"{srv.url}/?{seconds}", timeout=TIMEOUT)


def wait_in_app(srv, count: int) -> None:
    """Wait until `count` requests are inside the app (each logs a line through wsgi.errors)."""
    srv.wait_for_log(r"(?s)" + r"slow_app: request started.*" * count)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_finishes_running_requests(start_server, sig):
    srv = start_server("--threads", "4", "slow_app:app")
    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(get, srv, 1.0) for _ in range(3)]
        wait_in_app(srv, 3)
        t0 = time.monotonic()
        srv.signal(sig)
        results = [f.result() for f in running]
    assert [r.status_code for r in results] == [200, 200, 200]
    assert all(r.text == "slept 1.0" for r in results)
    # the stop waited for them, and then the process exited 0 by itself
    srv.proc.wait(TIMEOUT)
    assert srv.stop() == 0
    assert time.monotonic() - t0 >= 0.5
    assert "Traceback" not in srv.log


def test_graceful_stop_refuses_new_connections_and_closes_idle_ones(start_server):
    srv = start_server("--threads", "4", "slow_app:app")
    idle = srv.connect(TIMEOUT)
    idle.sendall(b"GET /?0 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(get, srv, 1.5)
        wait_in_app(srv, 2)  # the idle connection's request, then this one
        srv.signal(signal.SIGTERM)
        # the idle keep-alive connection is closed (EOF), not left hanging
        idle.settimeout(TIMEOUT)
        assert idle.recv(65536) == b""
        idle.close()
        # no new connection is served while the running request finishes
        with pytest.raises((ConnectionError, OSError)):
            with socket.create_connection((srv.host, srv.port), timeout=2) as s:
                s.sendall(b"GET /?0 HTTP/1.1\r\nHost: x\r\n\r\n")
                if not s.recv(65536):
                    raise ConnectionError("closed without an answer")
        assert running.result().status_code == 200
    srv.proc.wait(TIMEOUT)
    assert srv.stop() == 0


def test_second_signal_stops_at_once(start_server):
    srv = start_server("--threads", "2", "--graceful-timeout", "30", "slow_app:app")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(get, srv, 20)
        wait_in_app(srv, 1)
        srv.signal(signal.SIGINT)
        time.sleep(0.3)
        assert srv.proc.poll() is None, "the first signal must wait for the running request"
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        srv.proc.wait(5)
        assert time.monotonic() - t0 < 2.0
        with pytest.raises(requests.RequestException):
            running.result()
    assert srv.stop() == 0
    assert "Fast stop" in srv.log


def test_graceful_timeout_bounds_the_wait(start_server):
    srv = start_server("--threads", "2", "--graceful-timeout", "1", "slow_app:app")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(get, srv, 20)
        wait_in_app(srv, 1)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        srv.proc.wait(10)
        assert time.monotonic() - t0 < 5.0
        with pytest.raises(requests.RequestException):
            running.result()
    assert "graceful_timeout expired" in srv.log
