"""One worker process: what a freshly forked child of the master does until it exits.

1. Take its own signal dispositions (the master's handlers only queue for the master).
2. Get the application (import it, unless the master preloaded it).
3. Build its ``_ferrule.Server`` on the inherited listening sockets, with its heartbeat record
   and its ``max_requests`` (plus jitter), and tell the master it is ready (a line on a pipe).
4. Serve until SIGTERM (graceful), SIGINT/SIGQUIT (fast), or ``max_requests`` is reached.

With server hooks (``ferrule.hooks``): ``post_fork`` runs first, ``post_worker_init`` once
the application is loaded, ``pre_request``/``post_request`` around each request, and
``worker_exit`` last, however the worker ends.

The return value is the process's exit code: 0 after serving, ``EXIT_APP_LOAD`` (4) if the
application cannot be loaded, ``EXIT_BOOT_FAILED`` (3) if the server cannot be built.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import os
import random
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ferrule import loader, logs, server, sockets
from ferrule.hooks import HookError, Hooks, WorkerInfo
from ferrule.settings import Settings
from ferrule.workers import reloader
from ferrule.workers.appsource import AppSource
from ferrule.workers.heartbeat import HeartbeatFile

log = logging.getLogger(logs.ERROR_LOGGER)

EXIT_OK = 0
EXIT_BOOT_FAILED = 3
EXIT_APP_LOAD = 4

READY = "ready"
FILES = "files"

_IGNORED = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)
_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


@dataclass(frozen=True)
class WorkerSpec:
    """What the master hands a new worker."""

    source: AppSource
    settings: Settings
    listeners: Sequence[sockets.Listener]
    status_fd: int
    """The write end of the pipe to the master."""
    heartbeat_fd: int
    heartbeat_offset: int
    multiprocess: bool
    report_files: bool
    """Send the application's module files to the master (``--reload``)."""
    hooks: Hooks
    """The server hooks (gunicorn's post_fork, post_worker_init, pre/post_request,
    worker_exit); empty without a Python config file."""
    info: WorkerInfo
    """This worker as the hooks see it (pre_fork got it in the master)."""


def run(spec: WorkerSpec) -> int:
    _boot_signals()
    # As in gunicorn: post_fork right after the fork, worker_exit however the worker ends
    # (a failing post_fork or post_worker_init is a boot failure).
    try:
        spec.hooks.post_fork(spec.info)
        return _serve(spec)
    except HookError:
        return EXIT_BOOT_FAILED
    finally:
        spec.hooks.worker_exit(spec.info)


def _serve(spec: WorkerSpec) -> int:
    s = spec.settings
    limit = s.max_requests + random.randint(0, s.max_requests_jitter) if s.max_requests else 0
    spec.info.max_requests = limit or sys.maxsize
    try:
        app = spec.source.load_in_worker()
    except loader.AppLoadError as exc:
        sys.stderr.write(exc.details)
        sys.stderr.write(
            f"ferrule: error: failed to load the application {spec.source.name!r}: {exc}\n"
        )
        return EXIT_APP_LOAD
    # The app's import may have disabled our loggers.
    logs.configure(s.log_level, s.error_logfile, s.log_format)
    spec.hooks.post_worker_init(spec.info, app)
    try:
        core = server.import_core()
        fds = _listening_fds(spec)
        conf = server.core_config(s)
        conf["multiprocess"] = spec.multiprocess
        conf["heartbeat_fd"] = spec.heartbeat_fd
        conf["heartbeat_offset"] = spec.heartbeat_offset
        if conf["metrics"]:  # counted in this worker's slot, where the master reads them
            conf["metrics_offset"] = HeartbeatFile.metrics_offset(spec.heartbeat_offset)
        if limit > 0:
            conf["max_requests"] = limit
        srv = server.new_core_server(core, spec.hooks.wrap(app, spec.info), fds, conf)
        # The core holds dups: when it closes them at a stop, this worker is off the sockets.
        for lst in spec.listeners:
            lst.close_fd()
        while _own_sockets:
            _own_sockets.pop().close()
    except server.CoreSetupError as exc:
        log.error("Worker failed to start: %s", exc)
        return EXIT_BOOT_FAILED
    except Exception:
        log.exception("Worker failed to start")
        return EXIT_BOOT_FAILED
    # The files first: once the master logs that this worker serves, it watches them.
    lines = [f"{FILES} {json.dumps(reloader.module_files())}"] if spec.report_files else []
    _report(spec.status_fd, "".join(f"{line}\n" for line in [*lines, READY]))
    os.close(spec.status_fd)
    others: dict[int, server.SignalHandler] = {signal.SIGUSR1: server.reopen_logs(srv)}
    with server.stop_on_signals(
        srv, graceful=(signal.SIGTERM,), fast=(signal.SIGINT, signal.SIGQUIT), others=others
    ) as wakeup_fd:
        srv.run(wakeup_fd)
    return EXIT_OK


def _boot_signals() -> None:
    """Signals while the worker boots: the master's ones are ignored, stops exit at once."""
    for sig in _IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    for sig in _STOPS:
        signal.signal(sig, _exit_on_signal)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, _reopen_logs)
    # The master forked us with its signals blocked: now that ours are in place, take them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [*_IGNORED, *_STOPS, signal.SIGCHLD, signal.SIGUSR1])
    # The master sends SIGABRT to a worker stuck past worker_timeout (then SIGKILL): print
    # where every thread is before dying. (faulthandler cannot register() SIGABRT; enable()
    # does this for SIGABRT, and for SIGSEGV and the like too.)
    with contextlib.suppress(Exception):
        faulthandler.enable(all_threads=True)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _reopen_logs(signum: int, frame: Any) -> None:
    logs.reopen_files()


def _listening_fds(spec: WorkerSpec) -> list[int]:
    """The inherited sockets, or with ``reuse_port`` a socket of our own per TCP address."""
    if not spec.settings.reuse_port:
        return [lst.fileno() for lst in spec.listeners]
    fds = []
    for lst in spec.listeners:
        if sockets.is_tcp(lst):
            sock = sockets.reuse_port_twin(lst, spec.settings.backlog)
            _own_sockets.append(sock)
            fds.append(sock.fileno())
        else:
            fds.append(lst.fileno())
    return fds


_own_sockets: list[Any] = []


def _report(fd: int, text: str) -> None:
    data = text.encode("utf-8")
    while data:
        written = os.write(fd, data)
        data = data[written:]
