"""One measured run: start a server pinned to its CPUs, poll until it answers, put load on it,
read what it cost from /proc, stop it."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loadgen
import procstat
from idle import IdleConnections
from servers import HOST, Launch
from workloads import Workload

LISTEN_RE = re.compile(r"Listening at: http://[^\s]*:(\d+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Setup:
    """How every run of one suite invocation is done."""

    seconds: float
    connections: int
    client_cpus: list[int] | None
    tool: str
    """``wrk`` or ``python`` (the fallback load generator)."""
    idle_count: int
    logdir: Path


class ServerFailed(RuntimeError):
    """The server did not start, or its port was taken."""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Server:
    """A server under test, in its own session so that it stops with all its processes."""

    def __init__(self, launch: Launch, cpus: list[int] | None, log: Path):
        self.launch = launch
        self.log = log
        if launch.port is not None and _port_open(launch.port):
            raise ServerFailed(f"port {launch.port} is already served by something else")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("WEB_CONCURRENCY", None)  # gunicorn and ferrule would take it as --workers
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [*loadgen.taskset_prefix(cpus), *launch.argv],
                cwd=str(launch.cwd),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, path: str, timeout: float = START_TIMEOUT) -> int:
        """Poll until the server answers a GET of ``path``; return its port."""
        deadline = time.monotonic() + timeout
        port = self.launch.port
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with {self.proc.returncode}: {self.log_tail()}")
            if port is None:
                m = LISTEN_RE.search(self.log.read_text("utf-8", "replace"))
                port = int(m.group(1)) if m else None
            if port is not None and _answers(port, path):
                return port
            time.sleep(0.05)  # poll interval, not a readiness guess
        raise ServerFailed(f"no answer within {timeout:g} s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL if it lingers; wait for its port."""
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.launch.port is None:
            return
        deadline = time.monotonic() + 10
        while _port_open(self.launch.port) and time.monotonic() < deadline:
            time.sleep(0.05)


def _load(setup: Setup, workload: Workload, port: int, connections: int) -> loadgen.LoadResult:
    if setup.tool == "wrk":
        url = f"http://{HOST}:{port}{workload.path}"
        return loadgen.run_wrk(
            url, setup.seconds, connections, setup.client_cpus, workload.body_bytes
        )
    return loadgen.run_python(
        HOST, port, workload.path, setup.seconds, connections, workload.body_bytes
    )


def _measured(setup: Setup, workload: Workload, pid: int, port: int, conns: int) -> dict[str, Any]:
    """Load the server once and return every number of that run."""
    with procstat.RssSampler(pid, port=port) as rss:
        before = procstat.Snapshot.take(pid)
        load = _load(setup, workload, port, conns)
        after = procstat.Snapshot.take(pid)
    n = load.requests
    cpu_s = after.cpu_s - before.cpu_s
    kernel_s = after.kernel_s - before.kernel_s
    latency = {} if n else {"p50_ms": None, "p90_ms": None, "p99_ms": None}  # wrk prints 0
    return {
        **load.as_dict(),
        **latency,
        "connections": conns,
        "cpu_s": cpu_s,
        "cpu_us_per_req": cpu_s * 1e6 / n if n else None,
        "kernel_share": kernel_s / cpu_s if cpu_s else None,
        "cpu_cores": cpu_s / load.seconds if load.seconds else None,
        "ctx_switches": after.ctx - before.ctx,
        "ctx_per_req": (after.ctx - before.ctx) / n if n else None,
        "rss_peak_kib": rss.peak_kib,
        # Clients connected but never accepted: the server serves only some of them.
        "backlog_peak": rss.peak_backlog,
        "rss_hwm_kib": procstat.hwm_kib(pid),
    }


def _measured_idle(
    setup: Setup, workload: Workload, pid: int, port: int, conns: int
) -> dict[str, Any]:
    """Active clients alone, then again next to ``idle_count`` idle keep-alive connections."""
    base = _load(setup, workload, port, conns)
    rss_before = procstat.rss_kib(pid)
    with IdleConnections(HOST, port, setup.idle_count) as idle:
        opened = idle.open()
        rss_idle = procstat.rss_kib(pid)
        out = _measured(setup, workload, pid, port, conns)
        alive = idle.alive()
        rss_loaded = procstat.rss_kib(pid)
    out.update(
        idle_wanted=setup.idle_count,
        idle_open=opened,
        idle_errors=setup.idle_count - opened,
        idle_alive_after=alive,
        rss_before_idle_kib=rss_before,
        rss_with_idle_kib=rss_idle,
        rss_with_idle_loaded_kib=rss_loaded,
        rss_per_idle_kib=(rss_idle - rss_before) / opened if opened else None,
        rps_without_idle=base.rps,
        throughput_drop=1 - out["rps"] / base.rps if base.rps else None,
    )
    return out


def measure(
    setup: Setup, workload: Workload, launch: Launch, server_cpus: list[int] | None, tag: str
) -> dict[str, Any]:
    """Start, measure, stop; the result has an ``error`` key instead when the run failed."""
    conns = workload.connections or setup.connections
    server = None
    try:
        server = Server(launch, server_cpus, setup.logdir / f"{tag}.log")
        port = server.wait_ready(workload.path)
        if workload.idle:
            return _measured_idle(setup, workload, server.pid, port, conns)
        return _measured(setup, workload, server.pid, port, conns)
    except (ServerFailed, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    finally:
        if server is not None:
            server.stop()
