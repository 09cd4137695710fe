"""Run the Rust server: settings -> listening sockets -> ``_ferrule.Server`` -> signals.

``serve(app, **settings)`` is the library entry point (it blocks like ``waitress.serve``);
the CLI calls ``run()`` after it has loaded the application itself. Both serve in this one
process unless the settings ask for a master (``workers > 1``, ``master``, ``max_requests``,
``reload``): then ``ferrule.workers`` forks and supervises worker processes, each of which
builds its own ``_ferrule.Server``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, Callable

from ferrule import config, loader, logs, metrics, settings, sockets
from ferrule.hooks import Hooks
from ferrule.workers import systemd
from ferrule.workers.pidfile import PidFile

log = logging.getLogger(logs.ERROR_LOGGER)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals that stop a single process gracefully (a second one stops it at once)."""
FAST_STOP_SIGNALS = (signal.SIGQUIT,)

SignalHandler = Callable[[int, Any], None]


class CoreUnavailable(RuntimeError):
    """The compiled extension ``ferrule._ferrule`` is missing or broken."""


class CoreSetupError(RuntimeError):
    """The core refused its configuration (a TLS file it cannot use, an access log it cannot
    open, ...): a startup error with a message, not a crash."""


def new_core_server(core: ModuleType, app: Any, fds: list[int], conf: dict[str, Any]) -> Any:
    """``_ferrule.Server(...)``, with a refused configuration as CoreSetupError."""
    try:
        return core.Server(app, fds, conf)
    except (OSError, ValueError) as exc:
        raise CoreSetupError(str(exc)) from None


def serve(app: Callable[..., Any], **kwargs: Any) -> None:
    """Serve the WSGI ``app`` until SIGINT or SIGTERM, then return.

    Every setting in ``ferrule.settings`` is a keyword (see docs/settings.md), e.g.
    ``serve(app, host="0.0.0.0", port=8080, threads=16)`` or ``serve(app, bind=["[::1]:0",
    "unix:/run/app.sock"])``. An unknown keyword raises TypeError, a bad value ValueError,
    both naming the keyword. Signal handlers are installed only when called from the main
    thread; called from another thread, it serves until the process exits.

    With ``workers=N`` (N > 1), ``master=True`` or ``max_requests``, the calling process
    becomes the master and forks the workers, which serve ``app`` as it is (a SIGHUP restarts
    them but cannot re-import it); that needs the main thread, and the process should have
    started no threads of its own before the call.
    """
    if not callable(app):
        raise TypeError(f"serve() needs a WSGI callable, got {type(app).__name__}")
    serve_layer(app, settings.Layer("serve()", settings.from_kwargs(kwargs), style="kwarg"))


def serve_layer(
    app: Callable[..., Any],
    layer: settings.Layer,
    hooks: Mapping[str, Callable[..., Any]] | None = None,
    warnings: tuple[str, ...] = (),
) -> None:
    """``serve()`` once its keywords are validated into ``layer`` (the PasteDeploy runner
    comes here too, with server ``hooks`` of its own and ``warnings`` to log): read the
    ``config`` file it names, set ``raw_env``, set up logging, then ``run()`` with the
    server hooks."""
    layers = []
    app_dirs: tuple[str, ...] = ()
    funcs: dict[str, Callable[..., Any]] = {}
    source = layer.source
    if layer.values.get("config"):
        file = config.load(layer.values["config"])
        layers.append(file.layer())
        app_dirs = file.app_dirs
        funcs.update(file.hooks)
        source = file.path if not hooks else f"{file.path}, {layer.source}"
        warnings = file.warnings + warnings
    funcs.update(hooks or {})
    run_hooks = Hooks(funcs, source)
    layers.append(layer)
    resolved = settings.resolve(layers)
    config.apply_env(resolved.raw_env)
    logs.setup(resolved)
    for warning in warnings:
        log.warning("%s", warning)
    loader.prepare_import(resolved.chdir, resolved.pythonpath, app_dirs)
    run(app, resolved, run_hooks)


def core_config(resolved: settings.Settings) -> dict[str, Any]:
    """The ``config`` dict ``_ferrule.Server`` reads: every ``core`` setting, plus extras."""
    conf: dict[str, Any] = {s.name: resolved[s.name] for s in settings.SETTINGS if s.core}
    # With TLS a connection holds three descriptors: the client's socket and a socket pair
    # between the TLS terminator and the core. With static mounts, one more: the file whose
    # end waits in the connection for a slow reader.
    per_connection = (3 if resolved.certfile else 1) + (1 if resolved.static else 0)
    conf["max_connections"] = connection_limit(resolved.max_connections, per_connection)
    conf["access_logfile"] = resolved.access_logfile or ("-" if resolved.access_log else None)
    conf["access_log_python"] = logs.access_has_user_handler()
    conf["multiprocess"] = False
    conf["errors"] = logs.ErrorStream()
    conf["metrics"] = resolved.metrics_bind is not None
    return conf


def import_core() -> ModuleType:
    """The Rust core ``ferrule._ferrule``; raise CoreUnavailable if it cannot be imported."""
    try:
        from ferrule import _ferrule
    except ImportError as exc:
        raise CoreUnavailable(
            f"ferrule's Rust core (ferrule._ferrule) cannot be imported: {exc}; "
            "build it with `make develop` or `pip install .`"
        ) from exc
    return _ferrule


def run(
    app: Callable[..., Any], resolved: settings.Settings, run_hooks: Hooks | None = None
) -> None:
    """Bind, serve until stopped by a signal, then close the sockets.

    Raises ``sockets.BindError`` if an address cannot be bound, ``PidFileError`` if the pid
    file cannot be written, ``HookError`` if a server hook that must not fail did. With
    settings that ask for a master, the workers serve ``app`` (forked from this process) and
    RuntimeError is raised if they cannot start.
    """
    from ferrule import workers

    run_hooks = run_hooks if run_hooks is not None else Hooks()
    if workers.needs_master(resolved):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("serve() with worker processes must be called from the main thread")
        code = workers.run(workers.AppSource.fixed(app), resolved, run_hooks)
        if code != 0:
            raise RuntimeError(f"the worker processes failed to start (exit code {code})")
        return
    core = import_core()
    run_hooks.starting(resolved, lambda: 1, master=False)  # once: the CLI may have called it
    with process_resources(resolved) as listeners:
        worker = run_hooks.single_worker(listeners)
        served = run_hooks.wrap(app, worker)
        fds = [lst.fileno() for lst in listeners]
        server = new_core_server(core, served, fds, core_config(resolved))
        others: dict[int, SignalHandler] = {
            signal.SIGHUP: _reload_tls(server) if resolved.certfile else _hup_needs_master,
            signal.SIGUSR1: reopen_logs(server),
        }
        # Handlers first: whoever reads "Listening at" may send a signal at once.
        scrapes = metrics.serve_in_thread(resolved.metrics_bind, server)
        with stop_on_signals(server, on_stop=_notify_stopping, others=others) as wakeup_fd, scrapes:
            log.info("Starting ferrule %s", core.__version__)
            log.info("Using %d threads", resolved.threads)
            for lst in listeners:
                log.info("Listening at: %s", lst.url)
            run_hooks.ready(listeners)
            run_hooks.post_worker_init(worker, app)
            # The core holds dups: once it closes them at a stop, the sockets close (new
            # connections are refused rather than left in a backlog nobody accepts from).
            for lst in listeners:
                lst.close_fd()
            systemd.notify("READY=1")
            try:
                server.run(wakeup_fd)
            finally:
                run_hooks.worker_exit(worker)
        log.info("Shutting down")
    run_hooks.exit()


def raise_open_files_limit() -> None:
    """Raise this process's soft open-files limit to its hard limit (each connection is a fd)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and soft != resource.RLIM_INFINITY:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connection_limit(setting: int, per_connection: int = 1) -> int:
    """``max_connections`` as the core gets it: ``0`` becomes the open-files limit less a
    reserve of a tenth (at least 32) for the application's own files and sockets, divided
    by the descriptors each connection holds."""
    if setting > 0:
        return setting
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - max(32, soft // 10)) // per_connection)


@contextlib.contextmanager
def process_resources(
    resolved: settings.Settings, listen: bool = True
) -> Iterator[list[sockets.Listener]]:
    """The open-files limit, the umask, the pid file and the listening sockets of this
    process, cleaned up after.

    Used by the single process and by the master. The sockets are systemd's when it passed
    some (``LISTEN_FDS``), else the ``bind`` addresses; ``listen=False`` only binds TCP
    addresses (``reuse_port`` with workers: each worker listens on a socket of its own).
    """
    raise_open_files_limit()
    if resolved.umask is not None:
        os.umask(resolved.umask)
    pidfile = PidFile(resolved.pidfile) if resolved.pidfile else None
    if pidfile is not None:
        pidfile.create()
    try:
        fds = systemd.listen_fds()
        if fds:
            log.info("Using %d socket(s) passed by systemd (LISTEN_FDS) instead of bind", len(fds))
        specs = [f"fd://{fd}" for fd in fds] or list(resolved.bind)
        listeners = sockets.open_listeners(
            specs, resolved.backlog, reuse_port=resolved.reuse_port, listen=listen
        )
        for lst in listeners:
            lst.tls = resolved.certfile is not None
        try:
            yield listeners
        finally:
            for lst in listeners:
                lst.close()
    finally:
        if pidfile is not None:
            pidfile.remove()


def _notify_stopping() -> None:
    systemd.notify("STOPPING=1")


def _reload_tls(server: Any) -> SignalHandler:
    """SIGHUP in a single process serving TLS: read the certificate and key again."""

    def handler(signum: int, frame: Any) -> None:
        try:
            server.reload_tls()
        except OSError as exc:
            log.error("SIGHUP: TLS certificate not reloaded, keeping the old one: %s", exc)
        else:
            log.info("SIGHUP: TLS certificate reloaded")

    return handler


def _hup_needs_master(signum: int, frame: Any) -> None:
    log.warning("SIGHUP ignored: reloading needs a master process (--master, or --workers above 1)")


def reopen_logs(server: Any) -> SignalHandler:
    """The SIGUSR1 handler: reopen the Python log files and the core's access log."""

    def handler(signum: int, frame: Any) -> None:
        logs.reopen_files()
        try:
            server.reopen_logs()
        except OSError as exc:
            log.error("SIGUSR1: could not reopen the access log: %s", exc)

    return handler


@contextlib.contextmanager
def stop_on_signals(
    server: Any,
    graceful: Sequence[int] = STOP_SIGNALS,
    fast: Sequence[int] = FAST_STOP_SIGNALS,
    on_stop: Callable[[], None] | None = None,
    others: Mapping[int, SignalHandler] | None = None,
) -> Iterator[int | None]:
    """Make ``graceful`` signals stop ``server`` gracefully, ``fast`` ones at once.

    A second stop signal during the graceful wait stops at once. ``on_stop`` runs on the
    first stop signal; ``others`` are more handlers to install for the duration. Yields the
    fd the Rust core watches so that Python signal handlers run while it blocks with the GIL
    released (``signal.set_wakeup_fd``), or None off the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    received: list[int] = []

    def handle(signum: int, frame: object) -> None:
        # Runs in the main thread between bytecodes: only ask the server to stop.
        received.append(signum)
        first = len(received) == 1
        if first and on_stop is not None:
            on_stop()
        server.stop(graceful=first and signum in graceful)

    handlers: dict[int, SignalHandler] = dict(others or {})
    handlers.update({sig: handle for sig in (*graceful, *fast)})
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    previous_fd = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield rsock.fileno()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(previous_fd)
        rsock.close()
        wsock.close()
        if received:
            log.debug("Stopped by %s", signal.Signals(received[0]).name)
