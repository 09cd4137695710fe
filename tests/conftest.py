"""Shared fixtures: start the real ferrule server as a subprocess and wait until it listens."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
APPS = Path(__file__).resolve().parent / "apps"
LISTEN_RE = re.compile(r"Listening at: (\S+)")


class ServerProcess:
    """A running `ferrule` subprocess; its stderr is collected in `self.log`."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]):
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ferrule", *args],
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
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
        if self.url.startswith("http://"):
            hostport = self.url[len("http://") :]
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


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(*args, cwd=..., env=..., ready=True) -> ServerProcess.

    By default binds 127.0.0.1:0 (pass your own --bind/-c to override) and waits until the
    server logs its "Listening at:" line.
    """
    started: list[ServerProcess] = []

    def start(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        ready: bool = True,
        bind: bool = True,
    ) -> ServerProcess:
        argv = list(args)
        if bind:
            argv = ["--bind", "127.0.0.1:0", *argv]
        srv = ServerProcess(argv, cwd or tmp_path, ferrule_env(env))
        started.append(srv)
        if ready:
            srv.wait_ready()
        return srv

    yield start
    for srv in started:
        srv.stop()
