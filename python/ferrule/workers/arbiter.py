"""The master process: forks the workers, keeps their number right, and acts on signals.

The master opens the listening sockets, creates the heartbeat file, and forks each worker
before it has started any thread of its own. Its signal handlers only append the signal to a
queue (Python then writes a byte to the wake-up pipe); the main loop below wakes up, takes
the signals off the queue and acts (logging from a handler once crashed gunicorn's master:
issues #2564, #3198). The loop also wakes every ``TICK`` seconds to reap exited workers, read
the heartbeat records and kill workers stuck past ``worker_timeout``; ``--reload``'s inotify
descriptor wakes it too, and so does ``--metrics-bind``'s socket: scrapes are answered inline,
non-blocking (``ferrule.metrics``), with the workers' counters read from the heartbeat file.

| signal | the master |
|---|---|
| TERM | graceful stop: TERM to every worker, which finish their requests within
  ``graceful_timeout``; exit 0. A second TERM makes it a fast stop. |
| INT, QUIT | fast stop: QUIT to every worker |
| HUP | reload: start ``workers`` new workers (fresh import), then stop the old ones |
| TTIN, TTOU | one more / one fewer worker |
| USR1 | reopen log files, here and in the workers |
| CHLD | reap; a worker that died is replaced |

A worker that exits before it reported ready failed to boot: the master stops and exits 3
(4 if the application could not be imported), unless it belonged to a reload, which is then
abandoned while the old workers keep serving.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ferrule import loader, logs, metrics, server, sockets
from ferrule.hooks import Hooks
from ferrule.settings import Settings
from ferrule.workers import systemd, worker
from ferrule.workers.appsource import AppSource
from ferrule.workers.heartbeat import HeartbeatFile
from ferrule.workers.reloader import FileWatcher

log = logging.getLogger(logs.ERROR_LOGGER)

TICK = 0.1
"""Longest sleep of the main loop (seconds) when no signal or worker message arrives."""
ABORT_GRACE = 1.0
"""Between SIGABRT (traceback dump) and SIGKILL for a worker stuck past worker_timeout."""
STOP_MARGIN = 5.0
"""How long after graceful_timeout a stopping worker still gets before SIGKILL."""
FAST_STOP_WAIT = 3.0
"""How long a fast-stopping worker gets before SIGKILL."""

HANDLED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)


@dataclass
class WorkerProcess:
    """The master's view of one worker."""

    pid: int
    generation: int
    heartbeat_offset: int
    status_fd: int
    started: float
    ready_at: float | None = None
    stopping: bool = False
    """Asked to stop (or killed): its exit is expected and it is not replaced."""
    kill_at: float | None = None
    timed_out: bool = False
    pending: bytes = b""

    @property
    def ready(self) -> bool:
        return self.ready_at is not None


class Arbiter:
    def __init__(self, source: AppSource, resolved: Settings, hooks: Hooks | None = None):
        self.source = source
        self.s = resolved
        self.hooks = hooks if hooks is not None else Hooks()
        self.age = 0
        """How many workers were forked (gunicorn's worker age)."""
        self.target = resolved.workers
        self.workers: dict[int, WorkerProcess] = {}
        self.generation = 0
        self.reload_from: int | None = None
        """While a reload boots new workers: the generation they replace."""
        self.reload_pending = False
        self.stopping = ""  # "", "graceful" or "fast"
        self.exit_code = worker.EXIT_OK
        self.announced_ready = False
        self.signals: collections.deque[int] = collections.deque()
        self.watcher = FileWatcher(resolved.reload_extra_files) if resolved.reload else None
        self.listeners: list[sockets.Listener] = []
        self.heartbeat: HeartbeatFile | None = None
        self.wake_r = self.wake_w = -1
        self.totals = metrics.Totals()
        """``--metrics-bind``: counts of exited workers, and restarts."""
        self.metrics: metrics.Endpoint | None = None
        self.core: Any = None

    # --- running -----------------------------------------------------------------------

    def run(self) -> int:
        core = self.core = server.import_core()
        self.source.load_in_master()
        self.hooks.starting(self.s, lambda: self.target, master=True)
        # Handlers first: whoever reads "Listening at" may send a signal at once.
        with self._signals(), self._heartbeat_file(), self._metrics_endpoint():
            with server.process_resources(self.s, listen=not self.s.reuse_port) as listeners:
                self.listeners = listeners
                log.info("Starting ferrule %s (master pid %d)", core.__version__, os.getpid())
                for lst in listeners:
                    log.info("Listening at: %s", lst.url)
                log.info("Using %d workers with %d threads each", self.target, self.s.threads)
                try:
                    self.hooks.ready(listeners)
                    self._loop()
                finally:
                    self._kill_all()
        log.info("Shutting down: master")
        self.hooks.exit()
        return self.exit_code

    def _loop(self) -> None:
        while True:
            self._handle_signals()
            self._reap()
            now = time.monotonic()
            if not self.stopping:
                self._check_timeouts(now)
                self._check_files(now)
                self._manage()
            self._kill_overdue(now)
            if self.stopping and not self.workers:
                return
            self._wait()

    @contextlib.contextmanager
    def _heartbeat_file(self) -> Iterator[None]:
        self.heartbeat = HeartbeatFile(self.core.METRICS_SIZE if self.s.metrics_bind else 0)
        try:
            yield
        finally:
            self.heartbeat.close()

    @contextlib.contextmanager
    def _metrics_endpoint(self) -> Iterator[None]:
        if self.s.metrics_bind is None:
            yield
            return
        self.metrics = metrics.open_endpoint(self.s.metrics_bind, self._scrape)
        try:
            yield
        finally:
            self.metrics.close()
            self.metrics = None

    def _worker_metrics(self, w: WorkerProcess) -> metrics.Counts:
        """A worker's counters, from its slot of the heartbeat file (live, or its last)."""
        assert self.heartbeat is not None
        at = self.heartbeat.metrics_offset(w.heartbeat_offset)
        return metrics.Counts.from_core(self.core.read_metrics(self.heartbeat.fd, at))

    def _scrape(self) -> str:
        return self.totals.text(
            (self._worker_metrics(w) for w in self.workers.values()), len(self.workers)
        )

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        previous_fd = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, self._queue_signal) for sig in HANDLED}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            signal.set_wakeup_fd(previous_fd)
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _queue_signal(self, signum: int, frame: object) -> None:
        # Only queue: the main loop acts (set_wakeup_fd already woke it up).
        self.signals.append(signum)

    def _wait(self) -> None:
        """Sleep until a signal, a message from a worker, or the next tick."""
        fds = [self.wake_r] + [w.status_fd for w in self.workers.values() if w.status_fd >= 0]
        if self.watcher is not None:
            fds.append(self.watcher.fileno())
        scrapes = self.metrics.read_fds() if self.metrics is not None else []
        scrapes_w = self.metrics.write_fds() if self.metrics is not None else []
        try:
            readable, writable, _ = select.select(fds + scrapes, scrapes_w, [], TICK)
        except InterruptedError:
            return
        if self.metrics is not None:  # answered inline: never blocks, bounded (metrics.py)
            self.metrics.step(set(readable) & set(scrapes), writable)
            readable = [fd for fd in readable if fd not in scrapes]
        for fd in readable:
            if fd == self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
            elif self.watcher is not None and fd == self.watcher.fileno():
                self.watcher.collect(time.monotonic())
            else:
                self._read_status(fd)

    # --- signals -------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.popleft()
            if sig == signal.SIGTERM:
                self._stop(graceful=True)
            elif sig in (signal.SIGINT, signal.SIGQUIT):
                self._stop(graceful=False)
            elif sig == signal.SIGHUP:
                self._reload("SIGHUP")
            elif sig == signal.SIGTTIN:
                self.target += 1
                log.info("SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU:
                if self.target > 1:
                    self.target -= 1
                log.info("SIGTTOU: %d workers", self.target)
            elif sig == signal.SIGUSR1:
                logs.reopen_files()
                for w in self.workers.values():
                    self._kill(w.pid, signal.SIGUSR1)

    def _stop(self, graceful: bool) -> None:
        if self.stopping == "fast":
            return
        if self.stopping == "graceful":
            graceful = False  # a second stop signal: do not wait any longer
        self.stopping = "graceful" if graceful else "fast"
        if graceful:
            log.info("Graceful stop: waiting up to %g s for running requests", self.grace)
        else:
            log.info("Fast stop")
        systemd.notify("STOPPING=1")
        # Off the sockets now: once the workers have taken what is queued and closed theirs,
        # new connections are refused (a proxy retries them elsewhere) instead of waiting
        # in a backlog nobody will accept from.
        for lst in self.listeners:
            lst.close_fd()
        for w in list(self.workers.values()):
            self._retire(w, graceful)

    @property
    def grace(self) -> float:
        return float(self.s.graceful_timeout)

    def _retire(self, w: WorkerProcess, graceful: bool = True) -> None:
        """Ask a worker to stop; SIGKILL it if it is still there after its allowance."""
        w.stopping = True
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        wait = self.grace + STOP_MARGIN if graceful else FAST_STOP_WAIT
        deadline = time.monotonic() + wait
        w.kill_at = deadline if w.kill_at is None else min(w.kill_at, deadline)
        self._kill(w.pid, sig)

    @staticmethod
    def _kill(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    # --- reloads -------------------------------------------------------------------------

    def _reload(self, reason: str) -> None:
        if self.stopping:
            return
        if self.reload_from is not None:
            self.reload_pending = True
            log.info("Reload (%s) queued: a reload is in progress", reason)
            return
        if not self.source.reimports:
            log.info("Reload (%s): restarting the workers (serve() cannot re-import)", reason)
        try:
            self.source.reload_in_master()
        except loader.AppLoadError as exc:
            sys.stderr.write(exc.details)
            log.error("Reload (%s) failed, the old workers keep serving: %s", reason, exc)
            return
        log.info("Reload (%s): starting %d new workers", reason, self.target)
        self.reload_from = self.generation
        self.generation += 1

    def _reload_done(self) -> None:
        old = [w for w in self.workers.values() if w.generation != self.generation]
        log.info("Reload done: stopping %d old workers", sum(not w.stopping for w in old))
        for w in old:
            if not w.stopping:
                self._retire(w)
        self.reload_from = None
        self.source.commit()
        if self.reload_pending:
            self.reload_pending = False
            self._reload("queued")

    def _reload_failed(self, failed: WorkerProcess, how: str) -> None:
        log.error(
            "Reload failed: new worker %d %s before it was ready; the old workers keep serving",
            failed.pid,
            how,
        )
        for w in self.workers.values():
            if w.generation == self.generation and not w.stopping:
                self._retire(w)
        assert self.reload_from is not None
        self.generation, self.reload_from = self.reload_from, None
        self.source.rollback()
        self.reload_pending = False

    def _check_files(self, now: float) -> None:
        if self.watcher is None:
            return
        changed = self.watcher.settled(now)
        if changed:
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            self._reload(f"{changed[0]} changed{more}")

    # --- the workers ---------------------------------------------------------------------

    def _manage(self) -> None:
        """Start or stop workers so that ``target`` of the current generation run."""
        if self.stopping:
            return
        current = self._current()
        for _ in range(self.target - len(current)):
            self._spawn()
        if len(current) > self.target and self.reload_from is None:
            for w in sorted(current, key=lambda w: w.started)[: len(current) - self.target]:
                log.info("Stopping worker %d (%d workers wanted)", w.pid, self.target)
                self._retire(w)
        current = self._current()
        if len(current) < self.target or not all(w.ready for w in current):
            return
        if self.reload_from is not None:
            self._reload_done()
        if not self.announced_ready:
            self.announced_ready = True
            log.info("Ready: %d workers serving", len(current))
            systemd.notify("READY=1")

    def _current(self) -> list[WorkerProcess]:
        return [
            w for w in self.workers.values() if w.generation == self.generation and not w.stopping
        ]

    def _spawn(self) -> None:
        assert self.heartbeat is not None
        offset = self.heartbeat.allocate()
        self.age += 1
        info = self.hooks.new_worker(self.age)
        self.hooks.pre_fork(info)
        read_fd, write_fd = os.pipe()
        spec = worker.WorkerSpec(
            source=self.source,
            settings=self.s,
            listeners=self.listeners,
            status_fd=write_fd,
            heartbeat_fd=self.heartbeat.fd,
            heartbeat_offset=offset,
            multiprocess=True,
            report_files=self.watcher is not None,
            hooks=self.hooks,
            info=info,
        )
        # Signals stay blocked across the fork until the child has its own handlers: a TERM
        # sent to a new worker must not land in the master's handler copied into it.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
            if pid == 0:  # the child never returns from here
                os.close(read_fd)
                self._become_worker(spec)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.hooks.forked(info, pid)
        self.workers[pid] = WorkerProcess(pid, self.generation, offset, read_fd, time.monotonic())
        log.info("Booting worker with pid: %d", pid)

    def _become_worker(self, spec: worker.WorkerSpec) -> None:
        code = worker.EXIT_BOOT_FAILED
        try:
            signal.set_wakeup_fd(-1)
            if self.metrics is not None:
                self.metrics.close_in_child()
            for fd in (self.wake_r, self.wake_w, *(w.status_fd for w in self.workers.values())):
                if fd >= 0:
                    os.close(fd)
            self.workers.clear()
            self.signals.clear()
            code = worker.run(spec)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else worker.EXIT_BOOT_FAILED
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _read_status(self, fd: int) -> bool:
        """Read what a worker wrote on its status pipe; False once nothing more is there."""
        w = next((w for w in self.workers.values() if w.status_fd == fd), None)
        if w is None:
            return False
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            os.close(fd)
            w.status_fd = -1
            return False
        w.pending += data
        *lines, w.pending = w.pending.split(b"\n")
        for line in lines:
            kind, _, rest = line.decode("utf-8", "replace").partition(" ")
            if kind == worker.READY and w.ready_at is None:
                w.ready_at = time.monotonic()
                log.info("Worker %d is serving", w.pid)
            elif kind == worker.FILES and self.watcher is not None:
                self.watcher.add(json.loads(rest))
        return True

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            self.hooks.reaped(pid)
            while w.status_fd >= 0 and self._read_status(w.status_fd):
                pass  # a last "ready" may still be in the pipe
            if w.status_fd >= 0:  # held open by a process the worker forked
                os.close(w.status_fd)
                w.status_fd = -1
            assert self.heartbeat is not None
            if self.metrics is not None:  # its counts must outlive it (before the slot is reused)
                try:
                    self.totals.fold(self._worker_metrics(w))
                except OSError as exc:
                    log.error("Worker %d: its metrics could not be read: %s", w.pid, exc)
            self.heartbeat.release(w.heartbeat_offset)
            self._exited(w, os.waitstatus_to_exitcode(status))

    def _exited(self, w: WorkerProcess, code: int) -> None:
        how = _describe_exit(code)
        if w.timed_out and not w.ready:
            how = f"did not start serving within {self.s.worker_timeout:g} s (worker_timeout)"
        elif (w.stopping or self.stopping) and not w.timed_out:
            log.info("Worker %d exited (%s)", w.pid, how)
            return
        if not w.ready:
            if self.reload_from is not None and w.generation == self.generation:
                self._reload_failed(w, how)
                return
            if self.stopping:
                return
            self._boot_failed(w, code, how)
        elif w.timed_out:
            log.info("Worker %d is gone (%s)", w.pid, how)
            if not self.stopping:
                self.totals.restarted("timeout")
        elif code == 0:
            log.info("Worker %d exited by itself (max_requests); replacing it", w.pid)
            self.totals.restarted("max_requests")
        else:
            log.error("Worker %d died (%s); replacing it", w.pid, how)
            self.totals.restarted("died")

    def _boot_failed(self, w: WorkerProcess, code: int, how: str) -> None:
        if code == worker.EXIT_APP_LOAD:
            self.exit_code = worker.EXIT_APP_LOAD
            log.error(
                "Worker %d failed to boot: the application %r could not be loaded "
                "(traceback above); stopping",
                w.pid,
                self.source.name,
            )
        else:
            self.exit_code = worker.EXIT_BOOT_FAILED
            log.error("Worker %d failed to boot (%s); stopping", w.pid, how)
        self._stop(graceful=True)

    # --- watchdogs -----------------------------------------------------------------------

    def _check_timeouts(self, now: float) -> None:
        limit = float(self.s.worker_timeout)
        if limit <= 0:
            return
        assert self.heartbeat is not None
        now_ns = time.monotonic_ns()
        for w in list(self.workers.values()):
            if w.stopping:
                continue
            if w.ready_at is None:
                if now - w.started > limit:
                    self._abort(w, f"did not start serving within {limit:g} s")
                continue
            beat = self.heartbeat.read(w.heartbeat_offset)
            if beat.pid != w.pid:  # no record written yet
                if now - w.ready_at > limit:
                    self._abort(w, f"no heartbeat for {now - w.ready_at:.1f} s")
                continue
            silent = (now_ns - beat.time_ns) / 1e9
            running = (now_ns - beat.request_start_ns) / 1e9 if beat.request_start_ns else 0.0
            if silent > limit:
                self._abort(w, f"no heartbeat for {silent:.1f} s")
            elif running > limit:
                self._abort(w, f"request {beat.request_line!r} running for {running:.1f} s")

    def _abort(self, w: WorkerProcess, why: str) -> None:
        log.error(
            "Worker timeout (pid %d): %s (worker_timeout %g s); killing it",
            w.pid,
            why,
            self.s.worker_timeout,
        )
        w.stopping = True
        w.timed_out = True
        w.kill_at = time.monotonic() + ABORT_GRACE
        self._kill(w.pid, signal.SIGABRT)

    def _kill_overdue(self, now: float) -> None:
        for w in self.workers.values():
            if w.kill_at is not None and now >= w.kill_at:
                w.kill_at = None
                if not w.timed_out:
                    log.warning("Worker %d did not stop in time: SIGKILL", w.pid)
                self._kill(w.pid, signal.SIGKILL)

    def _kill_all(self) -> None:
        """Leave no worker behind (the loop ended, normally or by an exception)."""
        for w in self.workers.values():
            self._kill(w.pid, signal.SIGKILL)
        for pid in list(self.workers):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            w = self.workers.pop(pid)
            if w.status_fd >= 0:
                os.close(w.status_fd)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
