"""How each server under test is started: its command line for one workload.

Peers run from the peers' venv with the settings ../shared/bench/peers.sh uses (gunicorn
gthread 8 threads, waitress/uwsgi/pyruvate 4 threads, bjoern and fastwsgi single-threaded,
granian its defaults); ferrule runs from the project's venv with ``--threads``.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

from workloads import Workload

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
HOST = "127.0.0.1"

PEERS = ("bjoern", "fastwsgi", "granian", "uwsgi", "pyruvate", "waitress", "gunicorn")
SERVERS = ("ferrule", *PEERS)
PEER_THREADS = {"bjoern": 1, "fastwsgi": 1, "uwsgi": 4, "pyruvate": 4, "waitress": 4, "gunicorn": 8}
IDLE_KEEP_ALIVE = 600
"""Keep-alive timeout (s) given to servers that have one, so idle connections stay open."""


@dataclass(frozen=True)
class Launch:
    server: str
    argv: list[str]
    port: int | None
    """The fixed port it listens on; None: read it from the "Listening at:" log line."""
    threads: int | None
    """Threads running the app, None for the server's own default."""
    workers: int
    cwd: Path = APPS

    @property
    def label(self) -> str:
        parts = [f"{self.threads} thr" if self.threads else "default threads"]
        if self.workers > 1:
            parts.append(f"{self.workers} workers")
        return f"{self.server} ({', '.join(parts)})"


@functools.cache
def ferrule_has_workers(ferrule: tuple[str, ...]) -> bool:
    """Whether this ferrule knows ``--workers`` (multi-process serving)."""
    try:
        out = subprocess.run(
            [*ferrule, "--help"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return False
    return "--workers" in out


def _runner(module: str, call: str) -> str:
    """Python code that imports the workload's app from bench/apps and calls ``call``."""
    return f"import sys; sys.path.insert(0, '.'); from {module} import app; {call}"


def launch(
    server: str,
    workload: Workload,
    *,
    ferrule: tuple[str, ...],
    peers_bin: Path,
    port: int,
    threads: int,
    workers: int,
) -> Launch | None:
    """The command starting ``server`` for ``workload``; None if it cannot run ``workers``."""
    mod, target = workload.app, f"{workload.app}:app"
    idle = workload.idle
    py = str(peers_bin / "python")
    if server == "ferrule":
        if workers > 1 and not ferrule_has_workers(ferrule):
            return None
        argv = [*ferrule, "--bind", f"{HOST}:0", "--threads", str(threads)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        if idle:
            argv += ["--keep-alive", str(IDLE_KEEP_ALIVE)]
        return Launch(server, [*argv, target], None, threads, workers)
    if server == "gunicorn":
        argv = [str(peers_bin / "gunicorn"), "-w", str(workers), "-k", "gthread"]
        argv += ["--threads", "8", "-b", f"{HOST}:{port}", "--log-level", "warning"]
        if idle:
            argv += ["--keep-alive", str(IDLE_KEEP_ALIVE)]
        return Launch(server, [*argv, target], port, 8, workers)
    if server == "granian":
        argv = [str(peers_bin / "granian"), "--interface", "wsgi", "--workers", str(workers)]
        argv += ["--host", HOST, "--port", str(port), "--no-ws", "--log-level", "warning"]
        return Launch(server, [*argv, target], port, None, workers)
    if server == "uwsgi":
        argv = [str(peers_bin / "uwsgi"), "--http11-socket", f"{HOST}:{port}"]
        argv += ["--wsgi-file", f"{mod}.py", "--callable", "app", "--processes", str(workers)]
        argv += ["--threads", "4", "--disable-logging"]
        return Launch(server, argv, port, 4, workers)
    if workers > 1:
        return None  # the rest serve from one process only
    if server == "waitress":
        argv = [str(peers_bin / "waitress-serve"), f"--listen={HOST}:{port}", "--threads=4"]
        if idle:
            argv.append(f"--channel-timeout={IDLE_KEEP_ALIVE}")
        return Launch(server, [*argv, target], port, 4, 1)
    calls = {
        "bjoern": f"import bjoern; bjoern.run(app, {HOST!r}, {port})",
        "fastwsgi": f"import fastwsgi; fastwsgi.run(wsgi_app=app, host={HOST!r}, port={port})",
        "pyruvate": f"import pyruvate; pyruvate.serve(app, '{HOST}:{port}', 4)",
    }
    if server in calls:
        return Launch(
            server, [py, "-c", _runner(mod, calls[server])], port, PEER_THREADS[server], 1
        )
    raise ValueError(f"unknown server {server!r}")
