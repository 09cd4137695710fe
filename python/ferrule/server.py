"""Run the Rust server: settings -> listening sockets -> ``_ferrule.Server`` -> signals.

``serve(app, **settings)`` is the library entry point (it blocks like ``waitress.serve``);
the CLI calls ``run()`` after it has loaded the application itself.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any, Callable

from ferrule import config, loader, logs, settings, sockets

log = logging.getLogger(logs.ERROR_LOGGER)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class CoreUnavailable(RuntimeError):
    """The compiled extension ``ferrule._ferrule`` is missing or broken."""


def serve(app: Callable[..., Any], **kwargs: Any) -> None:
    """Serve the WSGI ``app`` until SIGINT or SIGTERM, then return.

    Every setting in ``ferrule.settings`` is a keyword (see docs/settings.md), e.g.
    ``serve(app, host="0.0.0.0", port=8080, threads=16)`` or ``serve(app, bind=["[::1]:0",
    "unix:/run/app.sock"])``. An unknown keyword raises TypeError, a bad value ValueError,
    both naming the keyword. Signal handlers are installed only when called from the main
    thread; called from another thread, it serves until the process exits.
    """
    if not callable(app):
        raise TypeError(f"serve() needs a WSGI callable, got {type(app).__name__}")
    values = settings.from_kwargs(kwargs)
    layers = []
    app_dirs: tuple[str, ...] = ()
    if values.get("config"):
        file = config.load(values["config"])
        layers.append(file.layer())
        app_dirs = file.app_dirs
    layers.append(settings.Layer("serve()", values, style="kwarg"))
    resolved = settings.resolve(layers)
    logs.configure(resolved.log_level, resolved.access_log)
    loader.prepare_import(resolved.chdir, resolved.pythonpath, app_dirs)
    run(app, resolved)


def core_config(resolved: settings.Settings) -> dict[str, Any]:
    """The ``config`` dict ``_ferrule.Server`` reads: every ``core`` setting, plus extras."""
    conf: dict[str, Any] = {s.name: resolved[s.name] for s in settings.SETTINGS if s.core}
    conf["multiprocess"] = False
    conf["errors"] = logs.ErrorStream()
    return conf


def run(app: Callable[..., Any], resolved: settings.Settings) -> None:
    """Bind, serve until stopped by a signal, then close the sockets.

    Raises ``sockets.BindError`` if an address cannot be bound.
    """
    try:
        from ferrule import _ferrule
    except ImportError as exc:
        raise CoreUnavailable(
            f"ferrule's Rust core (ferrule._ferrule) cannot be imported: {exc}; "
            "build it with `make develop` or `pip install .`"
        ) from exc

    listeners = sockets.open_listeners(resolved.bind, resolved.backlog)
    try:
        server = _ferrule.Server(app, [lst.fileno() for lst in listeners], core_config(resolved))
        log.info("Starting ferrule %s", _ferrule.__version__)
        log.info("Using %d threads", resolved.threads)
        for lst in listeners:
            log.info("Listening at: %s", lst.url)
        with _stop_on_signals(server) as wakeup_fd:
            server.run(wakeup_fd)
        log.info("Shutting down")
    finally:
        for lst in listeners:
            lst.close()


@contextlib.contextmanager
def _stop_on_signals(server: Any) -> Iterator[int | None]:
    """Make SIGINT/SIGTERM stop ``server`` gracefully (a repeated signal asks for a hard stop).

    Yields the fd the Rust core watches so that Python signal handlers run while it blocks
    with the GIL released (``signal.set_wakeup_fd``), or None off the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    received: list[int] = []

    def handle(signum: int, frame: object) -> None:
        # Runs in the main thread between bytecodes: only ask the server to stop.
        received.append(signum)
        server.stop(graceful=len(received) == 1)

    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    previous_fd = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield rsock.fileno()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(previous_fd)
        rsock.close()
        wsock.close()
        if received:
            log.debug("Stopped by %s", signal.Signals(received[0]).name)
