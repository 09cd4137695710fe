"""Shared fixtures: start the real ferrule server as a subprocess and wait until it listens."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
APPS = Path(__file__).resolve().parent / "apps"
LISTEN_RE = re.compile(r"Listening at: (\S+)")


class ServerProcess:
    """A running `ferrule` subprocess; its stderr is collected in `self.log`."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str],
        command: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ):
        self.args = args
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "ferrule"]), *args],
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
        )
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""
        self.host = ""
        self.port = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Block until a log line matches `pattern` (a regex); fail after `timeout`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search("".join(self._lines))
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log}")
                self._cond.wait(min(left, 0.2))

    def wait_ready(self, timeout: float = 15.0) -> ServerProcess:
        m = self.wait_for_log(LISTEN_RE.pattern, timeout)
        self.url = m.group(1)
        if self.url.startswith(("http://", "https://")):
            hostport = self.url.partition("://")[2]
            host, _, port = hostport.rpartition(":")
            self.host = host.strip("[]")
            self.port = int(port)
        return self

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        return self.proc.returncode


def ferrule_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # A CI environment's WEB_CONCURRENCY would turn single-process tests into master mode.
    env.pop("WEB_CONCURRENCY", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if extra:
        env.update(extra)
    return env


def run_ferrule(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m ferrule ARGS` to completion (for commands that exit by themselves)."""
    return subprocess.run(
        [sys.executable, "-m", "ferrule", *args],
        cwd=str(cwd),
        env=ferrule_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextlib.contextmanager
def shared_server(tmp_path_factory, name: str, *args: str) -> Iterator[ServerProcess]:
    """One server on 127.0.0.1:0 for a whole test module: a module-scoped fixture yields
    from ``with shared_server(tmp_path_factory, "name", ARGS...) as s``."""
    s = ServerProcess(
        ["--bind", "127.0.0.1:0", *args], tmp_path_factory.mktemp(name), ferrule_env()
    )
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def token() -> str:
    """A short unique marker to find one request's lines in a shared server's log."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(*args, cwd=..., env=..., ready=True) -> ServerProcess.

    By default binds 127.0.0.1:0 (pass your own --bind/-c to override) and waits until the
    server logs its "Listening at:" line. ``command`` replaces ``python -m ferrule`` (the args
    follow it); ``pass_fds`` are inherited by the server.
    """
    started: list[ServerProcess] = []

    def start(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        ready: bool = True,
        bind: bool = True,
        command: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> ServerProcess:
        argv = list(args)
        if bind:
            argv = ["--bind", "127.0.0.1:0", *argv]
        srv = ServerProcess(argv, cwd or tmp_path, ferrule_env(env), command, pass_fds)
        started.append(srv)
        if ready:
            srv.wait_ready()
        return srv

    yield start
    for srv in started:
        srv.stop()


# --- worker processes (tests/test_workers*.py) ---------------------------------------------


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = ""):
    """Poll `predicate()` until it returns a truthy value (returned); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def children_of(pid: int) -> set[int]:
    """Live (not zombie) child processes of `pid`, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


# HTTP helpers for the worker-process tests: one request per fresh connection, and a
# bounded load generator that counts every failure.

CLIENT_TIMEOUT = 10.0
PID_RE = re.compile(r"pid=(\d+)")


def get(host: str, port: int, path: str = "/", timeout: float = CLIENT_TIMEOUT) -> tuple[int, str]:
    """GET on a new connection; (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def get_unix(path: str, target: str = "/", timeout: float = CLIENT_TIMEOUT) -> tuple[int, str]:
    """GET over a unix socket; (status, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode("utf-8", "replace")


def pid_of(body: str) -> int:
    m = PID_RE.search(body)
    assert m, body
    return int(m.group(1))


class Load:
    """`clients` threads sending GETs on fresh connections, until `total` requests were sent,
    `seconds` passed, or `stop()`; every answer and every failure is recorded."""

    def __init__(
        self, host: str, port: int, clients: int, total: int, seconds: float, path: str = "/"
    ):
        self.host, self.port, self.path = host, port, path
        self.total, self.seconds = total, seconds
        self.bodies: list[str] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._sent = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        self._deadline = time.monotonic() + self.seconds
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.bodies) + len(self.failures)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(CLIENT_TIMEOUT + 5)

    def wait(self) -> None:
        """Wait until the bound (count or time) is reached."""
        for t in self._threads:
            t.join(self.seconds + CLIENT_TIMEOUT + 5)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if self._sent >= self.total:
                    return
                self._sent += 1
            try:
                status, body = get(self.host, self.port, self.path)
            except Exception as exc:  # every failure counts: connection refused, reset, timeout
                with self._lock:
                    self.failures.append(repr(exc))
                continue
            with self._lock:
                if status == 200:
                    self.bodies.append(body)
                else:
                    self.failures.append(f"HTTP {status}: {body[:200]}")
