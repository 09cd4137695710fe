"""Logging setup (the error log on stderr or a file), ``--log-config``, the JSON line format,
and the ``wsgi.errors`` stream.

Loggers: ``ferrule.error`` carries the server's own messages (and the Rust core's);
``ferrule.access`` gets one INFO line per request when it has a handler of the user's (the
Rust core writes ``access_logfile`` itself, see ``src/server/access/``). ferrule's own
error-log handler sits on the ``ferrule`` logger; a logging configuration that gives
``ferrule`` or ``ferrule.error`` handlers of its own (``--log-config``, or the application's
``logging.config``) replaces it.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.config
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

from ferrule.settings import SettingError

BASE_LOGGER = "ferrule"
ERROR_LOGGER = "ferrule.error"
ACCESS_LOGGER = "ferrule.access"
FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
STDERR = "-"

log = logging.getLogger(ERROR_LOGGER)


class LogConfigError(SettingError):
    """The ``log_config`` file cannot be read or applied (the CLI exits with code 2)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp`` (ISO 8601, local time with offset), ``level``,
    ``logger``, ``pid``, ``message``, plus ``exc_info`` (the formatted traceback) and
    ``stack_info`` when the record has them.

    Usable from a dictConfig file: ``"formatters": {"json": {"()":
    "ferrule.logs.JsonFormatter"}}``.
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created).astimezone()
        entry: dict[str, Any] = {
            "timestamp": stamp.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler ferrule installed itself (so configure() can tell it from the user's)."""

    spec: tuple[str, str] = ("", "")
    """The (error_logfile, log_format) it was made for."""
    previous_propagate = True


class _FileHandler(logging.FileHandler):
    """ferrule's handler for ``error_logfile`` (a FileHandler, so USR1 reopens it)."""

    spec: tuple[str, str] = ("", "")
    previous_propagate = True


def _ours(handler: logging.Handler) -> bool:
    return isinstance(handler, (_Handler, _FileHandler))


def access_has_user_handler() -> bool:
    """Whether ``ferrule.access`` has a handler the user configured (``log_config``, or the
    app's own logging setup): then the core also sends it each access line; otherwise the
    core writes only ``access_logfile`` itself, with no Python call per request."""
    return any(not _ours(h) for h in logging.getLogger(ACCESS_LOGGER).handlers)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(FORMAT, DATE_FORMAT)


def setup(s: Any) -> None:
    """A process's first logging setup from its settings: ``log_config`` (dictConfig), then
    ferrule's own handlers. Raises LogConfigError for a bad ``log_config`` file."""
    if s.log_config:
        apply_config_file(s.log_config)
    configure(s.log_level, s.error_logfile, s.log_format)
    error = logging.getLogger(ERROR_LOGGER)
    base = logging.getLogger(BASE_LOGGER)
    if s.error_logfile != STDERR and not any(_ours(h) for h in base.handlers):
        log.warning(
            "error_logfile %s is not used: the logging configuration gives %s its own handlers",
            s.error_logfile,
            ERROR_LOGGER if any(not _ours(h) for h in error.handlers) else BASE_LOGGER,
        )


def configure(log_level: str, error_logfile: str = STDERR, log_format: str = "text") -> None:
    """Set levels and, unless logging is already set up, attach ferrule's handlers.

    ferrule's error-log handler (stderr, or the ``error_logfile``) goes on the ``ferrule``
    logger when neither ``ferrule`` nor ``ferrule.error`` has handlers of someone else's, and
    either a file was asked for or the root logger has no handlers (an application that
    configured logging first keeps receiving our records). Safe to call again, e.g. after the
    application's import ran ``logging.config``: if that gave ``ferrule`` or
    ``ferrule.error`` handlers, ferrule's own is removed.
    """
    base = logging.getLogger(BASE_LOGGER)
    base.setLevel(log_level.upper())
    for name in (BASE_LOGGER, ERROR_LOGGER, ACCESS_LOGGER):
        logging.getLogger(name).disabled = False
    error = logging.getLogger(ERROR_LOGGER)
    spec = (error_logfile, log_format)
    foreign = any(not _ours(h) for h in (*base.handlers, *error.handlers))
    for old in [h for h in base.handlers if _ours(h)]:
        if foreign or getattr(old, "spec", None) != spec:
            _remove(base, old)
    if (
        not foreign
        and not base.handlers
        and (error_logfile != STDERR or not logging.getLogger().handlers)
    ):
        handler: logging.Handler
        if error_logfile == STDERR:
            handler = _Handler(sys.stderr)
        else:
            try:
                handler = _FileHandler(error_logfile, encoding="utf-8")
            except OSError as exc:
                raise LogConfigError(
                    f"cannot open error_logfile {error_logfile}: {exc.strerror or exc}"
                ) from None
        handler.spec = spec  # type: ignore[attr-defined]
        handler.setFormatter(_formatter(log_format))
        _add(base, handler)
    # The core writes access_logfile itself; this logger gets the lines only when the user
    # gave it a handler (access_has_user_handler), and then at INFO whatever log_level says.
    access = logging.getLogger(ACCESS_LOGGER)
    if access.level == logging.NOTSET:
        access.setLevel(logging.INFO)


def _add(logger: logging.Logger, handler: logging.Handler) -> None:
    handler.previous_propagate = logger.propagate  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


def _remove(logger: logging.Logger, handler: logging.Handler) -> None:
    logger.removeHandler(handler)
    if not logger.propagate:
        logger.propagate = getattr(handler, "previous_propagate", True)
    if isinstance(handler, _FileHandler):
        handler.close()


def read_config_file(path: str) -> dict[str, Any]:
    """The dictConfig dictionary in a JSON, TOML or YAML file (by suffix)."""
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".json":
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        elif suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - exercised on Python < 3.11 only
                import tomli as tomllib
            with open(path, "rb") as f:
                data = tomllib.load(f)
        elif suffix in (".yaml", ".yml"):
            import yaml

            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        else:
            raise LogConfigError(
                f"log config file {path}: expected a .json, .toml, .yaml or .yml file"
            )
    except OSError as exc:
        raise LogConfigError(f"cannot read log config file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, TOMLDecodeError
        raise LogConfigError(
            f"log config file {path}: invalid {suffix[1:].upper()}: {exc}"
        ) from None
    except Exception as exc:  # yaml.YAMLError
        if type(exc).__module__.startswith("yaml"):
            raise LogConfigError(f"log config file {path}: invalid YAML: {exc}") from None
        raise
    if not isinstance(data, dict):
        raise LogConfigError(
            f"log config file {path}: expected a mapping (the dictConfig dictionary), "
            f"got {type(data).__name__}"
        )
    data.setdefault("version", 1)
    return data


def apply_config_file(path: str) -> None:
    """Read ``path`` and hand it to ``logging.config.dictConfig``; LogConfigError on failure."""
    data = read_config_file(path)
    try:
        logging.config.dictConfig(data)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        raise LogConfigError(f"log config file {path}: {exc}{cause}") from None


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
