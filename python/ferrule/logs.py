"""Logging setup (error log on stderr, access log on stdout) and the ``wsgi.errors`` stream.

Loggers: ``ferrule.error`` carries the server's own messages (and the Rust core's);
``ferrule.access`` gets one INFO line per request when ``access_log`` is on.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable

ERROR_LOGGER = "ferrule.error"
ACCESS_LOGGER = "ferrule.access"
FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler ferrule installed itself (so configure() can tell it from the user's)."""


def configure(log_level: str, access_log: bool) -> None:
    """Set levels and, unless logging is already set up, attach ferrule's handlers.

    The ``ferrule`` logger gets a stderr handler when neither it nor the root logger has
    handlers; an application that configured logging first keeps receiving our records.
    Safe to call again, e.g. after the application's import ran ``logging.config``.
    """
    base = logging.getLogger("ferrule")
    base.setLevel(log_level.upper())
    for name in ("ferrule", ERROR_LOGGER, ACCESS_LOGGER):
        logging.getLogger(name).disabled = False
    if not base.handlers and not logging.getLogger().handlers:
        handler = _Handler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        base.addHandler(handler)
        base.propagate = False
    access = logging.getLogger(ACCESS_LOGGER)
    if access_log:
        access.setLevel(logging.INFO)  # access lines show whatever log_level says
        if not access.handlers and any(isinstance(h, _Handler) for h in base.handlers):
            handler = _Handler(sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            access.addHandler(handler)
            access.propagate = False


class ErrorStream:
    """The ``wsgi.errors`` stream: text written here goes to ``ferrule.error`` at ERROR.

    It is line-buffered per thread: each complete line becomes one log record, and
    ``flush()`` emits a pending partial line. Blank lines are dropped.
    """

    encoding = "utf-8"
    errors = "strict"
    closed = False

    def __init__(self, logger: logging.Logger | None = None):
        self._logger = logger or logging.getLogger(ERROR_LOGGER)
        self._local = threading.local()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        *lines, rest = (getattr(self._local, "pending", "") + text).split("\n")
        self._local.pending = rest
        for line in lines:
            self._emit(line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        self._local.pending = ""
        self._emit(pending)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip():
            self._logger.error("%s", line)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False


def reopen_files() -> int:
    """Reopen every ``logging.FileHandler``'s file (SIGUSR1, after logrotate moved it).

    Returns how many were reopened. Stream handlers (stderr, stdout) are left alone.
    """
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    count = 0
    for handler in {id(h): h for h in handlers}.values():
        if not isinstance(handler, logging.FileHandler):
            continue
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.close()
            handler.stream = handler._open()
            count += 1
        finally:
            handler.release()
    return count
