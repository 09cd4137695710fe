"""Every ferrule setting, declared once.

The command line (``cli.py``), config files (``config.py``), ``serve(**kwargs)``
(``server.py``) and ``docs/settings.md`` (``scripts/gen_settings_doc.py``) are all built from
the ``SETTINGS`` list below. To add a setting, add one ``Setting(...)`` here; if the Rust core
must see it, mark it ``core=True`` (and teach the core to read that key).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from ferrule import loader, sockets

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Hard ceilings for the request-head limits; a limit of 0 means "use the ceiling".
MAX_REQUEST_LINE = 65536
MAX_REQUEST_FIELDS = 32768
MAX_REQUEST_FIELD_SIZE = 65536


class SettingError(ValueError):
    """A setting has a bad value, an unknown name, or conflicts with another setting.

    The message names the option the way the user wrote it (``--threads``, a config key
    with its file, or a ``serve()`` keyword).
    """


@dataclass(frozen=True)
class Setting:
    """The one declaration of a setting: name, flags, validation, default and docs."""

    name: str
    section: str
    validator: Callable[[Any], Any]
    default: Any
    help: str
    """One sentence, shown by ``--help`` and as the first line in the docs."""
    doc: str = ""
    """More detail for docs/settings.md (Markdown)."""
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    action: str = "store"
    """How the CLI takes it: ``store``, ``append`` (repeatable), ``bool`` (--x/--no-x) or
    ``positional``."""
    config_aliases: tuple[str, ...] = ()
    """More config-file keys meaning this setting (besides its name, dashes or underscores)."""
    seed_key: str | None = None
    """The key the seed server's YAML config used for this setting (YAML files only)."""
    in_config: bool = True
    in_serve: bool = True
    core: bool = False
    """Passed to the Rust core in the ``config`` dict of ``_ferrule.Server``."""
    default_doc: str | None = None
    """How the default is shown in the docs when ``repr`` of it would not be clear."""
    default_env: str | None = None
    """An environment variable that, when set, replaces the default (e.g. WEB_CONCURRENCY)."""

    @property
    def cli_name(self) -> str:
        """The option as written on the command line (``--threads`` or ``TARGET``)."""
        if self.action == "positional":
            return self.metavar or self.name.upper()
        return self.flags[-1] if self.flags else ""

    def config_keys(self) -> tuple[str, ...]:
        """Config-file keys for this setting, in canonical (underscore) form."""
        if not self.in_config:
            return ()
        return (self.name, *self.config_aliases)


# --- validators: take a raw value (str from the CLI, or a TOML/YAML/Python value), return the
# normalized value, or raise ValueError with a message that does not repeat the setting name.


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{value!r} ({type(value).__name__})"


def integer(lo: int, hi: int | None = None, zero_means: int | None = None) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value.strip(), 10)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
        else:
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if number < lo or (hi is not None and number > hi):
            bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ValueError(f"must be {bounds}, got {number}")
        if number == 0 and zero_means is not None:
            return zero_means
        return number

    return validate


def seconds(allow_zero: bool) -> Callable[[Any], float]:
    def validate(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"expected a number of seconds, got {_describe(value)}")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {value!r}") from None
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            bound = "0 or more" if allow_zero else "more than 0"
            raise ValueError(f"must be {bound} seconds, got {value!r}")
        return number

    return validate


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {_describe(value)}")


def choice(*choices: str) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise ValueError(f"expected one of {', '.join(choices)}; got {_describe(value)}")

    return validate


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    return value


def optional_path(value: Any) -> str | None:
    if value is None:
        return None
    path = string(value)
    if not path:
        raise ValueError("expected a path, got an empty string")
    return path


def readable_file(value: Any) -> str | None:
    """An existing file (made absolute: workers may change directory)."""
    path = optional_path(value)
    if path is None:
        return None
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} is not a file")
    return os.path.abspath(path)


def directory(value: Any) -> str | None:
    path = optional_path(value)
    if path is not None and not os.path.isdir(path):
        raise ValueError(f"{path!r} is not a directory")
    return path


def _string_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"expected {what} or a list of them, got {_describe(value)}")


def bind_list(value: Any) -> tuple[str, ...]:
    specs = _string_list(value, "an address")
    if not specs:
        raise ValueError("expected at least one address")
    return tuple(str(sockets.parse_bind(spec)) for spec in specs)


def path_list(value: Any) -> tuple[str, ...]:
    """Comma-separated string, or a list of paths."""
    parts: list[str] = []
    for item in _string_list(value, "a comma-separated string of directories"):
        parts.extend(p.strip() for p in item.split(","))
    return tuple(p for p in parts if p)


def file_list(value: Any) -> tuple[str, ...]:
    """One path, or a list of paths (no comma splitting: file names may contain commas)."""
    paths = tuple(_string_list(value, "a file path"))
    if any(not p for p in paths):
        raise ValueError("expected a path, got an empty string")
    return paths


def umask(value: Any) -> int | None:
    """A file mode creation mask: an int, or an octal string such as ``"007"`` or ``"0o027"``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected an octal mask such as 007, got {_describe(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().lower()
        text = text[2:] if text.startswith("0o") else text
        try:
            number = int(text, 8)
        except ValueError:
            raise ValueError(f"expected an octal mask such as 007, got {value!r}") from None
    else:
        raise ValueError(f"expected an octal mask such as 007, got {_describe(value)}")
    if not 0 <= number <= 0o777:
        raise ValueError(f"must be between 000 and 777 (octal), got {value!r}")
    return number


def root_path(value: Any) -> str:
    path = string(value).strip()
    if path and not path.startswith("/"):
        raise ValueError(f"must be empty or start with '/', got {value!r}")
    return path.rstrip("/")


def host(value: Any) -> str:
    name = string(value).strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if not name:
        raise ValueError("expected a host name or IP address, got an empty string")
    return name


def target(value: Any) -> str | None:
    if value is None:
        return None
    text = string(value)
    loader.parse_target(text)  # raises ValueError on bad syntax
    return text.strip()


def address_list(value: Any) -> tuple[str, ...]:
    """IP addresses and CIDR networks, or ``*``: a list, or one comma-separated string."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    items = tuple(v.strip() for v in _string_list(value, "an IP address or network"))
    for item in items:
        if item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address, a CIDR network or '*'") from None
    return items


def env_list(value: Any) -> tuple[str, ...]:
    """``KEY=VALUE`` strings: one, or a list (as gunicorn's ``raw_env``)."""
    items = tuple(_string_list(value, "a KEY=VALUE string"))
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
    return items


def log_file(value: Any) -> str:
    """A log file path, or ``-`` for stderr."""
    path = string(value).strip()
    if not path:
        raise ValueError("expected a file path or '-' (stderr), got an empty string")
    return path


ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
"""gunicorn's default access-log format."""


def access_format(value: Any) -> str:
    spec = string(value)
    try:
        from ferrule import _ferrule
    except ImportError:  # the core is checked (and reported) when the server starts
        return spec
    _ferrule.check_access_format(spec)
    return spec


LOG_CONFIG_SUFFIXES = (".json", ".toml", ".yaml", ".yml")


def log_config_file(value: Any) -> str | None:
    """A ``logging.config.dictConfig`` file; its suffix says how to read it."""
    path = optional_path(value)
    if path is not None and os.path.splitext(path)[1].lower() not in LOG_CONFIG_SUFFIXES:
        raise ValueError(f"{path!r}: expected a .json, .toml, .yaml or .yml file")
    return path


def static_mounts(value: Any) -> tuple[str, ...]:
    """``URL=DIR`` mounts (one, or a list): the URL a path prefix, the directory existing;
    returned as ``URL=ABSOLUTE_DIR`` with the URL's trailing slash dropped."""
    mounts: list[str] = []
    for item in _string_list(value, "a URL=DIR mount"):
        url, sep, path = item.partition("=")
        url = url.strip()
        if not sep or not path:
            raise ValueError(f"expected URL=DIR, such as /static=./static; got {item!r}")
        prefix = url.rstrip("/")
        if not url.startswith("/") or not prefix:
            raise ValueError(f"the URL must start with '/' and not be '/' alone; got {item!r}")
        if any(c.isspace() or c in "?#%\\" for c in prefix) or any(
            seg in (".", "..") for seg in prefix.split("/")
        ):
            raise ValueError(
                "the URL may not hold spaces, '?', '#', '%', '\\' or '.'/'..' segments; "
                f"got {item!r}"
            )
        if not os.path.isdir(path):
            raise ValueError(f"{path!r} is not a directory (in {item!r})")
        mounts.append(f"{prefix}={os.path.abspath(path)}")
    return tuple(mounts)


def header_value(value: Any) -> str | None:
    """A response header value: no CR, LF or other control characters."""
    if value is None:
        return None
    text = string(value).strip()
    if not text:
        raise ValueError("expected a header value, got an empty string")
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text):
        raise ValueError(f"control character in {value!r}")
    return text


def optional_bind(value: Any) -> str | None:
    """One address as ``bind`` takes it (``HOST:PORT``, ``[IPV6]:PORT``, ``unix:PATH``)."""
    if value is None:
        return None
    return str(sockets.parse_bind(string(value)))


APP = "Application"
SOCKET = "Server socket"
THREADS = "Threads"
PROCESSES = "Worker processes"
TIMEOUTS = "Timeouts"
LIMITS = "Request limits"
PROXIES = "Proxies"
TLS = "TLS"
STATIC = "Static files"
LOGGING = "Logging"
METRICS = "Metrics"
CONFIG = "Config file"

SECTIONS = (
    CONFIG,
    APP,
    SOCKET,
    PROXIES,
    TLS,
    STATIC,
    THREADS,
    PROCESSES,
    TIMEOUTS,
    LIMITS,
    LOGGING,
    METRICS,
)

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "config",
        CONFIG,
        optional_path,
        None,
        "Read settings from this TOML, YAML or gunicorn-style Python file.",
        doc="The format follows the extension: `.toml`, `.yaml`/`.yml`, or `.py`. In TOML and "
        "YAML files keys are setting names (dashes or underscores). A `.py` file is run as "
        "gunicorn runs its config files: its top-level names that are gunicorn settings are "
        "used (`timeout`, `keepalive`, `preload_app`, ...), and its server hooks "
        "(`on_starting`, `post_fork`, `pre_request`, ...) are called; see "
        "[migrating](migrating.md#gunicorn). Options given on the command line override the "
        "file. See [Config files](#config-files) below.",
        flags=("-c", "--config"),
        metavar="FILE",
        in_config=False,
        default_doc="none",
    ),
    Setting(
        "wsgi_app",
        APP,
        target,
        None,
        "The WSGI application to serve, as `module:callable`.",
        doc="Forms accepted:\n\n"
        "- `pkg.module:name` — an attribute of the module; dotted paths like "
        "`module:obj.attr` work too.\n"
        "- `pkg.module` — the module's `application` attribute.\n"
        "- `module:create_app()` or `module:create_app('prod', debug=False)` — call a factory; "
        "its arguments must be Python literals (strings, numbers, booleans, None, tuples, lists, "
        "dicts).\n\n"
        "The current directory is put first on `sys.path` before the import. On the command "
        "line this is the positional `TARGET`; it has no `serve()` keyword (pass the "
        "application object itself).",
        metavar="TARGET",
        action="positional",
        config_aliases=("app",),
        in_serve=False,
        default_doc="none: required, on the command line or in the config file",
    ),
    Setting(
        "chdir",
        APP,
        directory,
        None,
        "Change to this directory before loading the application.",
        doc="Relative `unix:` socket paths and `pythonpath` entries are then relative to it.",
        flags=("--chdir",),
        metavar="DIR",
        default_doc="the current directory",
    ),
    Setting(
        "pythonpath",
        APP,
        path_list,
        (),
        "Comma-separated directories to put first on sys.path, e.g. `src,lib`.",
        doc="In a config file this may also be a list of strings.",
        flags=("--pythonpath",),
        metavar="DIRS",
        default_doc="none",
    ),
    Setting(
        "raw_env",
        APP,
        env_list,
        (),
        "Set an environment variable, `KEY=VALUE`, before the application loads; repeatable.",
        doc="As gunicorn's `-e/--env` and `raw_env`: the variables are set in ferrule's own "
        "environment (so the workers inherit them) before the application is imported and "
        "before the server hooks run. In a config file it is a list of strings, e.g. "
        '`raw_env = ["DJANGO_SETTINGS_MODULE=mysite.settings", "MODE=prod"]`.',
        flags=("-e", "--env"),
        metavar="KEY=VALUE",
        action="append",
        default_doc="none",
    ),
    Setting(
        "bind",
        SOCKET,
        bind_list,
        ("127.0.0.1:8000",),
        "Address to listen on; repeat the option to listen on several.",
        doc="Forms: `HOST:PORT`, `[IPV6]:PORT` (e.g. `[::1]:8000`), `unix:PATH` (a stale "
        "socket file left by a dead server is replaced), `fd://N` (an inherited listening "
        "socket, e.g. from systemd). Port `0` picks a free port; the log line `Listening at:` "
        "shows the real one. `bind` cannot be combined with `host`/`port` in the same place "
        "(command line, config file or `serve()` call); a later place overrides an earlier "
        "one.",
        flags=("-b", "--bind"),
        metavar="ADDRESS",
        action="append",
    ),
    Setting(
        "host",
        SOCKET,
        host,
        sockets.DEFAULT_HOST,
        "Host to listen on (waitress-style; with `port` it makes one `bind` address).",
        doc="If only `port` is given the host is `127.0.0.1`. Use `0.0.0.0` (or `::`) to "
        "listen on every interface.",
        flags=("--host",),
        metavar="HOST",
        seed_key="address",
    ),
    Setting(
        "port",
        SOCKET,
        integer(0, 65535),
        sockets.DEFAULT_PORT,
        "TCP port to listen on (waitress-style; with `host` it makes one `bind` address).",
        doc="If only `host` is given the port is 8000.",
        flags=("--port",),
        metavar="PORT",
        seed_key="port",
    ),
    Setting(
        "backlog",
        SOCKET,
        integer(1),
        2048,
        "Maximum number of pending connections (the `listen()` backlog).",
        doc="The kernel may cap it (`net.core.somaxconn` on Linux).",
        flags=("--backlog",),
        metavar="N",
        seed_key="backlog",
    ),
    Setting(
        "max_connections",
        SOCKET,
        integer(0),
        0,
        "Open connections per process past which new ones wait in the listen backlog.",
        doc="At the limit the server stops accepting: new connections wait in the kernel's "
        "listen queue (`backlog`) until an open one closes, instead of failing on a full file "
        "table. `0` derives it from the open-files limit (`ulimit -n`, which ferrule raises "
        "to its hard limit at start), keeping a tenth (at least 32) for the application's own "
        "files and sockets, divided by the descriptors a connection may hold: one, three "
        "with TLS (the socket and a pair to the TLS terminator), and one more with `static` "
        "mounts (the file whose end waits for a slow reader). The limit holds for TLS "
        "connections too: their handshakes wait.",
        flags=("--max-connections",),
        metavar="N",
        core=True,
        default_doc="0 (from `ulimit -n`)",
    ),
    Setting(
        "forwarded_allow_ips",
        PROXIES,
        address_list,
        ("127.0.0.1", "::1"),
        "Proxies (IPs, CIDR networks, or `*`) whose forwarding headers are believed.",
        doc="From these peers, and from any peer on a unix socket, `Forwarded` (RFC 7239) or "
        "else `X-Forwarded-For` / `X-Forwarded-Proto` set `REMOTE_ADDR` and "
        "`wsgi.url_scheme`; `X-Forwarded-Ssl: on` and `X-Forwarded-Protocol: ssl` say https "
        "too (gunicorn's `secure_scheme_headers`), and a request whose scheme headers disagree "
        "gets a 400. The client is the rightmost address in the chain that is not "
        "itself in this list (the entries a client wrote itself, at the left, are not "
        "believed). From other peers the headers change nothing (the application still "
        "sees them as `HTTP_X_FORWARDED_FOR` and so on). The same list says who may send a "
        "PROXY protocol header (`proxy_protocol`). Comma-separated on the command line.",
        flags=("--forwarded-allow-ips",),
        metavar="IPS",
        core=True,
        default_env="FORWARDED_ALLOW_IPS",
    ),
    Setting(
        "proxy_protocol",
        PROXIES,
        boolean,
        False,
        "Every connection starts with a PROXY protocol header (v1 or v2), as HAProxy's "
        "`send-proxy` sends.",
        doc="The header's client address becomes `REMOTE_ADDR` / `REMOTE_PORT`. A connection "
        "whose header is missing or malformed, or that comes from a peer not in "
        "`forwarded_allow_ips`, is closed (and logged). v2 `LOCAL` (health checks) and v1 "
        "`UNKNOWN` keep the real peer's address.",
        flags=("--proxy-protocol",),
        action="bool",
        core=True,
    ),
    Setting(
        "certfile",
        TLS,
        readable_file,
        None,
        "Serve HTTPS with this PEM certificate (chain); turns TLS on for every listener.",
        doc="TLS is terminated in the Rust core with rustls (TLS 1.2 and 1.3, ALPN `http/1.1`) "
        "on a thread of its own; the application sees `wsgi.url_scheme` `https`. SIGHUP "
        "reads the certificate and key again (with workers, the new workers do; a single "
        "process reloads them in place). Not combinable with `proxy_protocol`.",
        flags=("--certfile",),
        metavar="FILE",
        core=True,
        default_doc="none",
    ),
    Setting(
        "keyfile",
        TLS,
        readable_file,
        None,
        "The certificate's PEM private key (PKCS#8, PKCS#1 or SEC1); default: in `certfile`.",
        flags=("--keyfile",),
        metavar="FILE",
        core=True,
        default_doc="none",
    ),
    Setting(
        "ca_certs",
        TLS,
        readable_file,
        None,
        "Require client certificates signed by one of these PEM CA certificates (mutual TLS).",
        doc="A client without a valid certificate fails the handshake.",
        flags=("--ca-certs",),
        metavar="FILE",
        core=True,
        default_doc="none",
    ),
    Setting(
        "reuse_port",
        SOCKET,
        boolean,
        False,
        "Give each worker its own listening socket with SO_REUSEPORT for TCP addresses.",
        doc="The kernel then spreads new connections over the workers instead of letting them "
        "take turns on one shared socket. With workers, the master binds the address (so port "
        "`0` still works) without listening, and each worker binds it again and listens. "
        "Caveat: connections still queued on a worker's socket when that worker stops (reload, "
        "`max_requests`, scaling down) are reset, so graceful reloads are only lossless "
        "without it. `unix:` and `fd://` addresses are always shared.",
        flags=("--reuse-port",),
        action="bool",
    ),
    Setting(
        "umask",
        SOCKET,
        umask,
        None,
        "Set the process umask (octal, e.g. `007`) before binding `unix:` sockets.",
        doc="It applies to the whole process and its workers, so it also governs files the "
        "application creates. `007` makes a unix socket usable by its owner and group only. "
        "Unset, the umask inherited from the caller is kept. On the command line and in "
        'strings the digits are octal (`--umask 007`, `umask = "007"`); in TOML you may also '
        "write an octal integer, `umask = 0o007` (a plain integer is taken as its value, as "
        "by `os.umask`).",
        flags=("--umask",),
        metavar="MASK",
        default_doc="unset: the inherited umask",
    ),
    Setting(
        "threads",
        THREADS,
        integer(1),
        8,
        "Number of threads running the application.",
        doc="At most this many requests run application code at the same time.",
        flags=("--threads",),
        metavar="N",
        seed_key="concurrency",
        core=True,
    ),
    Setting(
        "workers",
        PROCESSES,
        integer(1),
        1,
        "Number of worker processes; more than 1 starts a master process that supervises them.",
        doc="Each worker has its own interpreter and runs `threads` application threads; they "
        "share the listening sockets. A common value is one or two per CPU core. With `1` "
        "(and neither `master`, `max_requests` nor `reload`) ferrule runs as a single process "
        "with no master. The environment variable `WEB_CONCURRENCY`, when set, replaces the "
        "default. See [deployment](deployment.md) for the signals the master understands.",
        flags=("-w", "--workers"),
        metavar="N",
        default_env="WEB_CONCURRENCY",
        default_doc="`1`, or `$WEB_CONCURRENCY` when set",
    ),
    Setting(
        "master",
        PROCESSES,
        boolean,
        False,
        "Run a master process even with one worker (as gunicorn always does).",
        doc="The master restarts a worker that dies, kills one stuck past `worker_timeout`, "
        "and handles SIGHUP (graceful reload) and SIGTTIN/SIGTTOU (one more or one fewer "
        "worker). It is on by itself when `workers` is more than 1, or `max_requests` or "
        "`reload` is set.",
        flags=("--master",),
        action="bool",
    ),
    Setting(
        "preload",
        PROCESSES,
        boolean,
        False,
        "Import the application in the master, before forking the workers.",
        doc="The workers then share the imported code copy-on-write, and an import error "
        "stops `ferrule` before any worker starts. On SIGHUP the master imports the "
        "application again (the modules it imported are dropped from `sys.modules` first). "
        "The application must not start threads at import time: the master forks after "
        "importing it. Without it, each worker imports the application itself.",
        flags=("--preload",),
        action="bool",
        in_serve=False,
    ),
    Setting(
        "max_requests",
        PROCESSES,
        integer(0),
        0,
        "Replace a worker after it has served this many requests; 0 means never.",
        doc="The worker stops accepting, finishes its requests (their responses say "
        "`Connection: close`) and exits; the master starts a replacement. No request fails. "
        "Useful against slow memory leaks in an application. Turns the master on.",
        flags=("--max-requests",),
        metavar="N",
    ),
    Setting(
        "max_requests_jitter",
        PROCESSES,
        integer(0),
        0,
        "Add a random 0..N to each worker's `max_requests`, so workers are not all replaced "
        "at once.",
        flags=("--max-requests-jitter",),
        metavar="N",
    ),
    Setting(
        "worker_timeout",
        PROCESSES,
        seconds(allow_zero=True),
        30.0,
        "Kill and replace a worker stuck in one request (or silent) for more than this many "
        "seconds; 0 disables.",
        doc="Needs the master. Each worker's Rust core writes a heartbeat record every 250 ms "
        "to a memory file shared with the master (no temp-file timestamps), from a thread "
        "that needs no GIL. The master kills a worker whose oldest running request is older "
        "than this, or whose heartbeat stopped, and logs the request line. It first sends "
        "SIGABRT (the worker prints the Python traceback of every thread), then SIGKILL one "
        "second later. A worker that does not start serving within this time after it was "
        "forked counts as failing to boot. On the command line it is `--timeout`, as in "
        "gunicorn; in config files the key is `worker_timeout`, because `timeout` in the seed "
        "server's YAML files means `header_timeout`.",
        flags=("-t", "--timeout"),
        metavar="SECONDS",
    ),
    Setting(
        "reload",
        PROCESSES,
        boolean,
        False,
        "Restart the workers when a Python file of the application changes (development).",
        doc="The master watches, with inotify, every module file the workers imported "
        "(outside the standard library and site-packages) and `reload_extra_files`. When a "
        "change has settled (0.1 s) it reloads as on SIGHUP: new workers start with "
        "freshly imported code, then the old ones stop. If the new code fails to import, the "
        "old workers keep serving and the traceback is logged; the next change tries again. "
        "Turns the master on.",
        flags=("--reload",),
        action="bool",
        in_serve=False,
    ),
    Setting(
        "reload_extra_files",
        PROCESSES,
        file_list,
        (),
        "Also reload when this file changes (templates, config); repeatable.",
        doc="Only used with `reload`.",
        flags=("--reload-extra-file",),
        metavar="FILE",
        action="append",
        in_serve=False,
        default_doc="none",
    ),
    Setting(
        "pidfile",
        PROCESSES,
        optional_path,
        None,
        "Write the process id of the master (or of the single process) to this file.",
        doc="The file is removed on exit. If it names a process that is still running, "
        "`ferrule` refuses to start.",
        flags=("-p", "--pid"),
        metavar="FILE",
        default_doc="none",
    ),
    Setting(
        "keep_alive",
        TIMEOUTS,
        seconds(allow_zero=True),
        5.0,
        "Seconds to wait for the next request on an idle keep-alive connection.",
        doc="`0` closes every connection after its response.",
        flags=("--keep-alive",),
        metavar="SECONDS",
        core=True,
    ),
    Setting(
        "header_timeout",
        TIMEOUTS,
        seconds(allow_zero=False),
        30.0,
        "Seconds a client has to send a complete request head (line and headers).",
        doc="A client that is slower gets an error response and is disconnected.",
        flags=("--header-timeout",),
        metavar="SECONDS",
        seed_key="timeout",
        core=True,
    ),
    Setting(
        "graceful_timeout",
        TIMEOUTS,
        seconds(allow_zero=True),
        30.0,
        "Seconds running requests get to finish after SIGTERM (and SIGHUP, for old workers).",
        doc="On SIGTERM the server stops accepting, closes idle keep-alive connections, lets "
        "requests in progress finish for up to this long, then exits. A single process "
        "without a master treats SIGINT the same way; a master treats SIGINT and SIGQUIT as "
        "a fast stop. A second SIGTERM during the wait stops at once.",
        flags=("--graceful-timeout",),
        metavar="SECONDS",
        core=True,
    ),
    Setting(
        "io_timeout",
        TIMEOUTS,
        seconds(allow_zero=False),
        60.0,
        "Seconds to wait for the next body bytes from a client, or for it to take response bytes.",
        doc="A request body that stalls longer is refused with 408 (if nothing was sent yet) "
        "and the connection closes; a client that stops reading the response is disconnected "
        "(the app's iterable is still closed). A response the app returned whole waits for a "
        "slow client in its connection, not in an app thread (up to 64 MiB per process).",
        flags=("--io-timeout",),
        metavar="SECONDS",
        core=True,
    ),
    Setting(
        "limit_request_line",
        LIMITS,
        integer(0, MAX_REQUEST_LINE, zero_means=MAX_REQUEST_LINE),
        8190,
        "Maximum size in bytes of the request line (method, target and version).",
        doc=f"`0` means the ceiling, {MAX_REQUEST_LINE}. A longer line is refused with an error "
        "response.",
        flags=("--limit-request-line",),
        metavar="BYTES",
        core=True,
    ),
    Setting(
        "limit_request_fields",
        LIMITS,
        integer(0, MAX_REQUEST_FIELDS, zero_means=MAX_REQUEST_FIELDS),
        100,
        "Maximum number of header fields in a request.",
        doc=f"`0` means the ceiling, {MAX_REQUEST_FIELDS}. A request with more is refused.",
        flags=("--limit-request-fields",),
        metavar="N",
        core=True,
    ),
    Setting(
        "limit_request_field_size",
        LIMITS,
        integer(0, MAX_REQUEST_FIELD_SIZE, zero_means=MAX_REQUEST_FIELD_SIZE),
        8190,
        "Maximum size in bytes of one request header field (name and value).",
        doc=f"`0` means the ceiling, {MAX_REQUEST_FIELD_SIZE}. A request with a larger field is "
        "refused.",
        flags=("--limit-request-field-size",),
        metavar="BYTES",
        core=True,
    ),
    Setting(
        "limit_request_body",
        LIMITS,
        integer(0),
        0,
        "Maximum size in bytes of a request body; 0 means unlimited.",
        doc="A request announcing or sending a larger body is refused.",
        flags=("--limit-request-body",),
        metavar="BYTES",
        core=True,
    ),
    Setting(
        "root_path",
        APP,
        root_path,
        "",
        "URL prefix the application is mounted at; becomes `SCRIPT_NAME`.",
        doc="For an app served behind a proxy under `/app`, pass `--root-path /app`. A trailing "
        "slash is dropped.",
        flags=("--root-path",),
        metavar="PATH",
        core=True,
    ),
    Setting(
        "static",
        STATIC,
        static_mounts,
        (),
        "Serve the files of DIR at the URL prefix URL, from the Rust core; repeatable.",
        doc="`--static /static=./static` answers every request whose (percent-decoded) path "
        "starts with `/static/` from the directory, before any Python runs: GET and HEAD "
        "get the file with sendfile, `ETag` and `Last-Modified` (and 304 for `If-None-Match` "
        "/ `If-Modified-Since`), one byte range (206, 416 past the end; several ranges get "
        "the whole file), and a `Content-Type` from the extension; other methods get 405. A "
        "path under the prefix naming no regular file (missing, a directory: no index or "
        "listing) is a 404 from the core, never passed to the application. `..`, encoded "
        "slashes and backslashes, NUL, and symlinks resolving outside DIR are refused "
        "(404). The longest matching prefix wins; `/` alone is refused. DIR is made "
        'absolute. See docs/deployment.md, "Static files".',
        flags=("--static",),
        metavar="URL=DIR",
        action="append",
        core=True,
        default_doc="none",
    ),
    Setting(
        "static_cache_control",
        STATIC,
        header_value,
        None,
        "The `Cache-Control` header of static responses, e.g. `public, max-age=3600`.",
        doc="Sent with every 200, 206 and 304 from a `static` mount. Without it no "
        "`Cache-Control` is sent: clients revalidate with the `ETag` and `Last-Modified` "
        "validators, by their own heuristics. For fingerprinted file names "
        "(`app.3f2a1b.js`), `public, max-age=31536000, immutable` is usual.",
        flags=("--static-cache-control",),
        metavar="VALUE",
        core=True,
        default_doc="none",
    ),
    Setting(
        "log_level",
        LOGGING,
        choice(*LOG_LEVELS),
        "info",
        "Level of the error log: " + ", ".join(LOG_LEVELS) + ".",
        doc="The error log goes through the Python logger `ferrule.error` (to stderr, or to "
        "`error_logfile`); the application's `wsgi.errors` stream writes to it at level "
        "`ERROR`.",
        flags=("--log-level",),
        metavar="LEVEL",
    ),
    Setting(
        "error_logfile",
        LOGGING,
        log_file,
        "-",
        "Write the error log to this file; `-` means stderr.",
        doc="As gunicorn's `--error-logfile`/`--log-file`. The file is opened in append mode "
        "(a relative path is relative to the directory ferrule was started in), and reopened "
        "on SIGUSR1, after logrotate has moved it. It is ferrule's own handler on the logger "
        "`ferrule.error`: if `log_config` (or the application's own logging setup) gives "
        "`ferrule` or `ferrule.error` handlers, those are used instead and this setting is "
        "ignored (with a warning, when `log_config` did it). Given a file, the error log goes "
        "there even when the root logger has handlers; with `-`, an application that set up "
        "the root logger before ferrule did keeps receiving ferrule's records instead.",
        flags=("--error-logfile", "--log-file"),
        metavar="FILE",
        default_doc="`-` (stderr)",
    ),
    Setting(
        "log_format",
        LOGGING,
        choice("text", "json"),
        "text",
        "Format of ferrule's error log lines: `text` or `json` (one JSON object per line).",
        doc="`json` writes objects with the keys `timestamp` (ISO 8601, local time with its "
        "offset), `level`, `logger`, `pid`, `message`, and `exc_info` (the formatted "
        "traceback) when there is one. It applies to ferrule's own error-log handler (stderr "
        "or `error_logfile`); in a `log_config` file, use the same format with "
        '`"()": "ferrule.logs.JsonFormatter"` as a formatter.',
        flags=("--log-format",),
        metavar="FORMAT",
    ),
    Setting(
        "log_config",
        LOGGING,
        log_config_file,
        None,
        "Configure Python logging from this `logging.config.dictConfig` file (JSON, TOML or YAML).",
        doc="The format follows the extension: `.json`, `.toml`, or `.yaml`/`.yml`. The file "
        "holds the dictionary `logging.config.dictConfig` takes, as Django's `LOGGING` "
        "setting does (`version: 1` is assumed when missing). It is applied before the "
        "application is imported, in the master before any worker is forked. ferrule logs "
        "through the loggers `ferrule.error` and `ferrule.access`, so the file can send them "
        "anywhere, e.g. `ferrule.error` to a `logging.FileHandler`. `FileHandler`s it creates "
        "are reopened on SIGUSR1. An unreadable or invalid file stops ferrule with exit code "
        "2.",
        flags=("--log-config",),
        metavar="FILE",
        default_doc="none",
    ),
    Setting(
        "access_logfile",
        LOGGING,
        optional_path,
        None,
        "Write one line per request (and per refused request) to this file; `-` is stdout.",
        doc="The Rust core formats and writes the lines itself, a few KiB at a time (whole "
        "lines, so workers sharing the file or stdout never interleave), with no Python call "
        "per request. SIGUSR1 reopens the file. Lines also go to the Python logger "
        "`ferrule.access` (at INFO) when that logger has a handler of your own, from "
        "`log_config` or the application's logging setup; with such a handler and no "
        "`access_logfile`, the logger is the only destination.",
        flags=("--access-logfile",),
        metavar="FILE",
        default_doc="none",
    ),
    Setting(
        "access_log",
        LOGGING,
        boolean,
        False,
        "Log one line per request to stdout (short for `--access-logfile -`).",
        flags=("--access-log",),
        action="bool",
    ),
    Setting(
        "access_logformat",
        LOGGING,
        access_format,
        ACCESS_LOG_FORMAT,
        "The access-log line, with gunicorn's atoms.",
        doc="Atoms are written `%(name)s`: `h` remote address, `l` `-`, `u` user (HTTP Basic), "
        "`t` local time (`[10/Oct/2000:13:55:36 -0700]`, the zone from `TZ`), `r` request line, "
        "`m` method, `U` path, `q` query string, `H` protocol, "
        "`s` status, `B` response bytes, `b` the same or `-`, `f` Referer, `a` User-Agent, "
        "`T` seconds, `M` milliseconds, `D` microseconds, `L` decimal seconds, `p` `<pid>`, "
        "`{Header}i` a request header, `{Header}o` a response header, `{key}e` a WSGI "
        "environ key (e.g. `%({wsgi.url_scheme}e)s`). `%%` is a `%`. Values from the client "
        'are escaped (`\\"` and `\\xHH`), so they cannot forge a line.',
        flags=("--access-logformat",),
        metavar="FORMAT",
        core=True,
    ),
    Setting(
        "metrics_bind",
        METRICS,
        optional_bind,
        None,
        "Serve Prometheus metrics (text format 0.0.4) at this address, e.g. `127.0.0.1:9100`.",
        doc="Any path answers (`/metrics` by convention). The numbers cover every worker: "
        "requests by method and status (`ferrule_requests_total`), a latency histogram "
        "(`ferrule_request_duration_seconds`), requests in flight, open connections and, "
        "with a master, worker restarts and the number of workers. The master serves it "
        "(a single process serves it from a thread of its own); each worker's core counts "
        "with a few atomic adds per request into memory the master reads. Keep it on a "
        "private address: it is not authenticated. The log line `Metrics at:` shows the "
        "address (port `0` picks a free one). See "
        "[deployment](deployment.md#metrics).",
        flags=("--metrics-bind",),
        metavar="ADDRESS",
        default_doc="none: no metrics",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

_SOCKET_NAMES = ("bind", "host", "port")


def display_default(setting: Setting, plain: bool = False) -> str:
    """The default for the docs (as in a TOML file) or, with ``plain``, for --help."""
    if setting.default_doc is not None:
        return setting.default_doc
    value = setting.default
    if plain and isinstance(value, str) and value:
        return value
    if plain and isinstance(value, (list, tuple)):
        return ", ".join(value)
    return format_value(value)


def format_value(value: Any) -> str:
    """A value written as in a TOML config file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def normalize_key(key: str) -> str:
    return key.strip().replace("-", "_")


def check(name: str, value: Any, label: str) -> Any:
    """Validate one value; on error raise SettingError prefixed with ``label``."""
    try:
        return BY_NAME[name].validator(value)
    except ValueError as exc:
        raise SettingError(f"{label}: {exc}") from None


def from_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``serve(**kwargs)``: TypeError for an unknown name, SettingError for a bad value."""
    values: dict[str, Any] = {}
    for name, value in kwargs.items():
        setting = BY_NAME.get(name)
        if setting is None or not setting.in_serve:
            raise TypeError(f"serve() got an unexpected keyword argument {name!r}")
        values[name] = check(name, value, f"serve() argument {name!r}")
    return values


@dataclass(frozen=True)
class Layer:
    """Values explicitly given in one place (config file, command line, serve() call)."""

    source: str
    values: Mapping[str, Any]
    style: str = "config"  # "cli", "config" or "kwarg": how to name options in messages

    @property
    def prefix(self) -> str:
        return f"{self.source}: " if self.source else ""

    def option(self, name: str) -> str:
        if self.style == "cli":
            return BY_NAME[name].cli_name
        if self.style == "kwarg":
            return f"{name}="
        return repr(name)


class Settings(Mapping[str, Any]):
    """The resolved value of every setting; read as ``settings.threads`` or ``settings["threads"]``.

    ``bind`` holds the final list of addresses, already combined with ``host``/``port``.
    """

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"


def defaults() -> dict[str, Any]:
    """The default of every setting; ``default_env`` variables that are set take precedence."""
    values = {s.name: s.default for s in SETTINGS}
    for s in SETTINGS:
        if s.default_env and os.environ.get(s.default_env, "").strip():
            values[s.name] = check(
                s.name, os.environ[s.default_env], f"environment variable {s.default_env}"
            )
    return values


def resolve(layers: Sequence[Layer]) -> Settings:
    """Merge defaults and layers (lowest precedence first) into the final Settings.

    ``bind``, ``host`` and ``port`` are resolved together: the highest layer giving any of
    them decides. If it gives ``bind``, that list is used; if it gives ``host``/``port``, they
    form one address (each falling back to lower layers, then to 127.0.0.1 / 8000).
    """
    values = defaults()
    for layer in layers:
        values.update(layer.values)
    values["bind"] = _resolve_bind(layers, values)
    return Settings(values)


def _resolve_bind(layers: Sequence[Layer], values: Mapping[str, Any]) -> tuple[str, ...]:
    for layer in layers:
        if "bind" in layer.values and ("host" in layer.values or "port" in layer.values):
            others = " and ".join(layer.option(n) for n in ("host", "port") if n in layer.values)
            raise SettingError(
                f"{layer.prefix}{layer.option('bind')} cannot be combined with {others}"
            )
    for layer in reversed(layers):
        given = [n for n in _SOCKET_NAMES if n in layer.values]
        if not given:
            continue
        if "bind" in given:
            return tuple(layer.values["bind"])
        address = sockets.format_hostport(values["host"], values["port"])
        try:
            return (str(sockets.parse_bind(address)),)
        except ValueError as exc:
            names = " and ".join(layer.option(n) for n in given)
            raise SettingError(f"{layer.prefix}{names}: {exc}") from None
    return tuple(BY_NAME["bind"].default)
