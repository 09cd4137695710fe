"""gunicorn's Python config files (``-c gunicorn.conf.py``), read as gunicorn reads them.

The file is executed as a module; its top-level names that are gunicorn settings are used,
every other name (imports, helpers, private names) is ignored, as gunicorn does. ``GUNICORN``
below is the one table from gunicorn's setting names to ferrule's: a setting ferrule shares
is validated by ferrule's own validator (messages name the file and the key), a server hook
ferrule calls is checked like gunicorn checks it (a callable, or a ``"module.function"``
string, taking the right number of arguments), and anything else gets a warning naming it.

A row whose ferrule setting does not exist (yet) in ``settings.BY_NAME`` is warned about like
an unsupported setting, and is used as soon as that setting exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ferrule import settings

HOOK = "(hook)"
"""The ``ferrule`` column of a server hook that ferrule calls (see ``ferrule.hooks``)."""


@dataclass(frozen=True)
class Row:
    gunicorn: str
    ferrule: str | None
    """ferrule's setting name, ``HOOK``, or None when ferrule has no equivalent."""
    note: str = ""
    """Why it is not supported, or how ferrule differs (warnings and docs/migrating.md)."""


_NO_NEED = "not needed by ferrule"

GUNICORN: tuple[Row, ...] = (
    # --- shared settings ------------------------------------------------------------------
    Row("wsgi_app", "wsgi_app"),
    Row("bind", "bind"),
    Row("backlog", "backlog"),
    Row("workers", "workers"),
    Row("threads", "threads"),
    Row("max_requests", "max_requests"),
    Row("max_requests_jitter", "max_requests_jitter"),
    Row("timeout", "worker_timeout"),
    Row("graceful_timeout", "graceful_timeout"),
    Row("keepalive", "keep_alive"),
    Row("limit_request_line", "limit_request_line"),
    Row("limit_request_fields", "limit_request_fields"),
    Row("limit_request_field_size", "limit_request_field_size"),
    Row("reload", "reload"),
    Row("reload_extra_files", "reload_extra_files"),
    Row("preload_app", "preload"),
    Row("reuse_port", "reuse_port"),
    Row("chdir", "chdir"),
    Row("raw_env", "raw_env"),
    Row("pidfile", "pidfile"),
    Row("umask", "umask"),
    Row("pythonpath", "pythonpath"),
    Row("root_path", "root_path"),
    Row("forwarded_allow_ips", "forwarded_allow_ips"),
    Row("accesslog", "access_logfile"),
    Row("access_log_format", "access_logformat"),
    Row("errorlog", "error_logfile"),
    Row("loglevel", "log_level"),
    Row("logconfig_json", "log_config"),
    Row("proxy_protocol", "proxy_protocol"),
    Row("keyfile", "keyfile"),
    Row("certfile", "certfile"),
    Row("ca_certs", "ca_certs"),
    # --- server hooks ferrule calls -------------------------------------------------------
    Row("on_starting", HOOK),
    Row("when_ready", HOOK),
    Row("pre_fork", HOOK),
    Row("post_fork", HOOK),
    Row("post_worker_init", HOOK),
    Row("worker_exit", HOOK),
    Row("on_exit", HOOK),
    Row("pre_request", HOOK),
    Row("post_request", HOOK),
    # --- gunicorn settings ferrule does not have ------------------------------------------
    Row("config", None, "a config file cannot name another one"),
    Row(
        "worker_class",
        None,
        "ferrule has one kind of worker: a Rust core with `threads` application threads "
        "per process, close to gunicorn's gthread",
    ),
    Row("worker_connections", None, "only for gunicorn's async workers"),
    Row("reload_engine", None, "ferrule's --reload always uses inotify"),
    Row("spew", None, "use sys.settrace in the application"),
    Row("check_config", None, "a command-line option: --check-config"),
    Row("print_config", None, "a command-line option: --print-config"),
    Row("sendfile", None, "ferrule always uses sendfile for wsgi.file_wrapper"),
    Row("daemon", None, "run ferrule under systemd or another supervisor"),
    Row("worker_tmp_dir", None, _NO_NEED + ": worker heartbeats are in shared memory"),
    Row("user", None, "start ferrule as the user (systemd User=)"),
    Row("group", None, "start ferrule as the group (systemd Group=)"),
    Row("initgroups", None, "start ferrule as the user (systemd User=)"),
    Row("tmp_upload_dir", None, _NO_NEED + ": request bodies are streamed"),
    Row("secure_scheme_headers", None, "see forwarded_allow_ips"),
    Row("forwarder_headers", None, "see forwarded_allow_ips"),
    Row("disable_redirect_access_to_syslog", None, "no syslog support"),
    Row("capture_output", None, "redirect stdout/stderr with the service manager"),
    Row("logger_class", None, "ferrule logs through Python logging: use log_config"),
    Row(
        "logconfig",
        None,
        "ferrule's log_config takes a dictConfig file (JSON, TOML or YAML), not a "
        "fileConfig .ini file",
    ),
    Row(
        "logconfig_dict",
        None,
        "write the dictionary to a JSON, TOML or YAML file and pass it as log_config "
        "(--log-config)",
    ),
    Row("syslog_addr", None, "no syslog support: use a logging handler in log_config"),
    Row("syslog", None, "no syslog support: use a logging handler in log_config"),
    Row("syslog_prefix", None, "no syslog support: use a logging handler in log_config"),
    Row("syslog_facility", None, "no syslog support: use a logging handler in log_config"),
    Row("enable_stdio_inheritance", None, "stdio is always inherited"),
    Row("statsd_host", None, "no statsd support"),
    Row("dogstatsd_tags", None, "no statsd support"),
    Row("statsd_prefix", None, "no statsd support"),
    Row("enable_backlog_metric", None, "no statsd support"),
    Row("proc_name", None, "ferrule does not set process titles"),
    Row("default_proc_name", None, "ferrule does not set process titles"),
    Row("paste", None, "use PasteDeploy's own runner: [server:main] use = egg:ferrule"),
    Row("raw_paste_global_conf", None, "use PasteDeploy's own runner: use = egg:ferrule"),
    Row("proxy_allow_ips", None, "see proxy_protocol"),
    Row("protocol", None, "ferrule speaks HTTP/1.1 only"),
    Row("uwsgi_allow_ips", None, "ferrule speaks HTTP/1.1 only"),
    Row("ssl_version", None, "see certfile/keyfile"),
    Row("cert_reqs", None, "see ca_certs"),
    Row("suppress_ragged_eofs", None, "see certfile/keyfile"),
    Row("do_handshake_on_connect", None, "see certfile/keyfile"),
    Row("ciphers", None, "see certfile/keyfile"),
    Row("http_protocols", None, "ferrule speaks HTTP/1.1 only"),
    Row("http2_cleartext", None, "ferrule speaks HTTP/1.1 only"),
    Row("http2_max_concurrent_streams", None, "ferrule speaks HTTP/1.1 only"),
    Row("http2_initial_window_size", None, "ferrule speaks HTTP/1.1 only"),
    Row("http2_max_frame_size", None, "ferrule speaks HTTP/1.1 only"),
    Row("http2_max_header_list_size", None, "ferrule speaks HTTP/1.1 only"),
    Row("permit_obsolete_folding", None, "ferrule always refuses obsolete line folding (400)"),
    Row("strip_header_spaces", None, "ferrule always refuses spaces before the colon (400)"),
    Row("permit_unconventional_http_method", None, "ferrule accepts any token as a method"),
    Row(
        "permit_unconventional_http_version",
        None,
        "ferrule answers 505 to a major version other than 1",
    ),
    Row("casefold_http_method", None, "ferrule passes the method as sent"),
    Row("header_map", None, "ferrule always drops header names with `_`, as gunicorn's drop"),
    Row("http_parser", None, "ferrule's parser is in its Rust core"),
    Row("asgi_loop", None, "ferrule serves WSGI only"),
    Row("asgi_lifespan", None, "ferrule serves WSGI only"),
    Row("asgi_disconnect_grace_period", None, "ferrule serves WSGI only"),
    Row("dirty_apps", None, "no dirty workers"),
    Row("dirty_workers", None, "no dirty workers"),
    Row("dirty_timeout", None, "no dirty workers"),
    Row("dirty_threads", None, "no dirty workers"),
    Row("dirty_graceful_timeout", None, "no dirty workers"),
    Row("control_socket", None, "control ferrule with signals"),
    Row("control_socket_mode", None, "control ferrule with signals"),
    Row("control_socket_disable", None, "control ferrule with signals"),
    # --- gunicorn hooks ferrule does not call ---------------------------------------------
    Row("on_reload", None, "hook not called by ferrule"),
    Row("worker_int", None, "hook not called by ferrule"),
    Row("worker_abort", None, "hook not called by ferrule"),
    Row("pre_exec", None, "hook not called by ferrule (no USR2 re-exec)"),
    Row("child_exit", None, "hook not called by ferrule"),
    Row("nworkers_changed", None, "hook not called by ferrule"),
    Row("ssl_context", None, "hook not called by ferrule"),
    Row("on_dirty_starting", None, "hook not called by ferrule (no dirty workers)"),
    Row("dirty_post_fork", None, "hook not called by ferrule (no dirty workers)"),
    Row("dirty_worker_init", None, "hook not called by ferrule (no dirty workers)"),
    Row("dirty_worker_exit", None, "hook not called by ferrule (no dirty workers)"),
)

BY_GUNICORN: dict[str, Row] = {row.gunicorn: row for row in GUNICORN}
TO_GUNICORN: dict[str, str] = {
    row.ferrule: row.gunicorn for row in GUNICORN if row.ferrule not in (None, HOOK)
}
"""ferrule setting name -> gunicorn's, for the shared settings."""

HOOK_ARITY: dict[str, tuple[int, ...]] = {
    "on_starting": (1,),
    "when_ready": (1,),
    "pre_fork": (2,),
    "post_fork": (2,),
    "post_worker_init": (1,),
    "worker_exit": (2,),
    "on_exit": (1,),
    "pre_request": (2,),
    "post_request": (2, 3, 4),
}
"""How many positional parameters each hook takes (gunicorn's rule; post_request may take
(worker, req), (worker, req, environ) or (worker, req, environ, resp))."""


class ConfigError(settings.SettingError):
    """The Python config file cannot be run, or has a bad value."""


@dataclass(frozen=True)
class Interpreted:
    """What a gunicorn config (or ini section) sets, in ferrule's terms."""

    values: dict[str, Any]
    hooks: dict[str, Callable[..., Any]]
    warnings: tuple[str, ...]


def target(row: Row) -> settings.Setting | None:
    """ferrule's Setting for a row, if ferrule has it (now)."""
    if row.ferrule is None or row.ferrule == HOOK:
        return None
    return settings.BY_NAME.get(row.ferrule)


def unsupported(source: str, name: str, row: Row) -> str:
    """The warning for a gunicorn setting ferrule does not use."""
    if row.ferrule not in (None, HOOK):
        note = f"ferrule's {row.ferrule!r} setting is planned"
    else:
        note = row.note
    return f"{source}: gunicorn setting {name!r} is not supported by ferrule and is ignored" + (
        f" ({note})" if note else ""
    )


def execute(path: str) -> dict[str, Any]:
    """Run the file as gunicorn does (module ``__config__``); return its top-level names."""
    if not os.path.isfile(path):
        raise ConfigError(f"cannot read config file {path}: no such file")
    # gunicorn has the current directory on sys.path when it runs the file.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    name = "__config__"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        details = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc, path)))
        raise ConfigError(
            f"{path}: running the config file raised {type(exc).__name__}: {exc}\n{details}"
        ) from None
    return vars(module)


def _user_frames(exc: BaseException, path: str) -> Any:
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != os.path.abspath(
        path
    ):
        tb = tb.tb_next
    return tb or exc.__traceback__


def interpret(source: str, names: Mapping[str, Any]) -> Interpreted:
    """Turn gunicorn setting names and values into ferrule values, hooks and warnings.

    ``source`` prefixes messages (the file). Names that are not gunicorn settings are ignored.
    """
    values: dict[str, Any] = {}
    hooks: dict[str, Callable[..., Any]] = {}
    warnings: list[str] = []
    for name, value in names.items():
        row = BY_GUNICORN.get(name)
        if row is None:
            continue
        if row.ferrule == HOOK:
            try:
                hooks[name] = check_hook(name, value)
            except ValueError as exc:
                raise ConfigError(f"{source}: {name!r}: {exc}") from None
            continue
        setting = target(row)
        if setting is None:
            warnings.append(unsupported(source, name, row))
            continue
        if value is None:  # gunicorn's "not set"
            continue
        try:
            values[setting.name] = settings.check(setting.name, value, f"{source}: {name!r}")
        except settings.SettingError as exc:
            raise ConfigError(str(exc)) from None
    return Interpreted(values, hooks, tuple(warnings))


def load(path: str) -> Interpreted:
    return interpret(path, execute(path))


def check_hook(name: str, value: Any) -> Callable[..., Any]:
    """A hook's callable: ``value`` itself or the ``"module.function"`` it names, with the
    number of positional parameters gunicorn requires. Raises ValueError."""
    if isinstance(value, str):
        module, _, attr = value.rpartition(".")
        if not module:
            raise ValueError(f"expected a callable or 'module.function', got {value!r}")
        try:
            value = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise ValueError(f"cannot import {module!r}: {exc}") from None
        except AttributeError:
            raise ValueError(f"{module!r} has no attribute {attr!r}") from None
    if not callable(value):
        raise ValueError(f"expected a callable, got {type(value).__name__}")
    wanted = HOOK_ARITY[name]
    arity = _arity(value)
    if arity is not None and arity not in wanted:
        expected = " or ".join(str(n) for n in wanted)
        raise ValueError(f"the hook must take {expected} positional argument(s), it takes {arity}")
    if name == "post_request" and arity in (2, 3):
        return _post_request_adapter(value, arity)
    return value


def _arity(func: Callable[..., Any]) -> int | None:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds for p in sig.parameters.values())


def _post_request_adapter(func: Callable[..., Any], arity: int) -> Callable[..., Any]:
    def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> Any:
        return func(worker, req) if arity == 2 else func(worker, req, environ)

    post_request.__wrapped__ = func  # type: ignore[attr-defined]
    return post_request
