"""The ``ferrule`` command: ``ferrule [OPTIONS] TARGET`` (also ``python -m ferrule``).

Options are generated from ``settings.SETTINGS``. Precedence: defaults < config file <
options given on the command line.

Exit codes: 0 after a normal stop (SIGINT/SIGTERM), 1 if serving failed (e.g. an address
cannot be bound), 2 for a usage or configuration error, 3 if a worker process failed to boot,
4 if the application cannot be loaded (in this process, or in a worker).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from ferrule import __version__, config, loader, logs, server, settings, sockets, workers
from ferrule.hooks import HookError, Hooks
from ferrule.workers import worker as worker_process
from ferrule.workers.pidfile import PidFileError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_WORKER_BOOT = worker_process.EXIT_BOOT_FAILED  # 3
EXIT_APP_LOAD = worker_process.EXIT_APP_LOAD  # 4

_STARTUP_ERRORS = (
    sockets.BindError,
    server.CoreUnavailable,
    server.CoreSetupError,
    PidFileError,
    HookError,
)

DESCRIPTION = "Serve a WSGI application over HTTP/1.1."
EPILOG = """\
TARGET is `module:callable`, `module` (meaning module:application), `module:obj.attr`, or a
factory call with literal arguments such as `module:create_app('prod')`.

examples:
  ferrule myproject.wsgi:application
  ferrule --bind 0.0.0.0:8080 --threads 16 'app:create_app()'
  ferrule -c ferrule.toml
"""


@dataclass(frozen=True)
class Invocation:
    """What the command line asks for, with every setting resolved."""

    settings: settings.Settings
    app_dirs: tuple[str, ...] = ()
    check_config: bool = False
    print_config: bool = False
    hooks: Hooks = field(default_factory=Hooks)
    """Server hooks from a gunicorn-style Python config file."""
    warnings: tuple[str, ...] = ()
    """What the config file set that ferrule ignores (logged once logging is set up)."""


class _ArgType:
    """argparse ``type=`` adapter: run a setting's validator, report errors argparse-style."""

    def __init__(self, setting: settings.Setting):
        self.setting = setting
        self.__name__ = setting.name  # argparse uses it in some messages

    def __call__(self, text: str) -> object:
        try:
            value = self.setting.validator(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if self.setting.action == "append":  # validators return a tuple; append wants one item
            return value[0]
        return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferrule",
        usage="%(prog)s [OPTIONS] [TARGET]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
        add_help=False,
    )
    groups = {name: parser.add_argument_group(name.lower()) for name in settings.SECTIONS}
    for s in settings.SETTINGS:
        _add_setting(parser, groups[s.section], s)
    misc = parser.add_argument_group("other")
    misc.add_argument("-h", "--help", action="help", help="Show this help and exit.")
    misc.add_argument(
        "--version", action="version", version=f"ferrule {__version__}", help="Show the version."
    )
    misc.add_argument(
        "--check-config",
        action="store_true",
        help="Load the settings and the application, then exit (0 if both are fine).",
    )
    misc.add_argument(
        "--print-config",
        action="store_true",
        help="Print the resolved settings as TOML and exit.",
    )
    return parser


def _add_setting(
    parser: argparse.ArgumentParser, group: argparse._ArgumentGroup, s: settings.Setting
) -> None:
    text = s.help
    if s.action != "positional":
        text += f" (default: {settings.display_default(s, plain=True)})"
    text = text.replace("%", "%%").replace("`", "")
    if s.action == "positional":
        # Validated after parsing, so that an unknown option is reported before a TARGET
        # that argparse mistook for the unknown option's value.
        parser.add_argument(s.name, nargs="?", default=None, metavar=s.metavar, help=text)
        return
    if s.action == "bool":
        group.add_argument(*s.flags, dest=s.name, action=argparse.BooleanOptionalAction, help=text)
    else:
        group.add_argument(
            *s.flags,
            dest=s.name,
            action=s.action,
            type=_ArgType(s),
            metavar=s.metavar,
            help=text,
        )


def parse(argv: Sequence[str] | None = None) -> Invocation:
    """Parse the command line and the config file; exit with code 2 on any usage error."""
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    given = {n: v for n, v in ns.items() if n in settings.BY_NAME and v is not None}
    if "bind" in given:
        given["bind"] = tuple(given["bind"])
    layers: list[settings.Layer] = []
    app_dirs: tuple[str, ...] = ()
    hooks = Hooks()
    warnings: tuple[str, ...] = ()
    try:
        for s in settings.SETTINGS:
            if s.action == "positional" and s.name in given:
                given[s.name] = settings.check(s.name, given[s.name], f"argument {s.cli_name}")
        if given.get("config"):
            file = config.load(given["config"])
            layers.append(file.layer())
            app_dirs = file.app_dirs
            hooks = Hooks(file.hooks, file.path)
            warnings = file.warnings
        layers.append(settings.Layer("", given, style="cli"))
        resolved = settings.resolve(layers)
    except settings.SettingError as exc:
        parser.error(str(exc))
    print_config = bool(ns.get("print_config"))
    if resolved.wsgi_app is None and not print_config:
        parser.error(
            "no application given: pass TARGET (module:callable), or set 'app' in the config file"
        )
    return Invocation(
        resolved, app_dirs, bool(ns.get("check_config")), print_config, hooks, warnings
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``ferrule`` command; always exits via SystemExit."""
    try:
        code = _run(parse(argv))
    except KeyboardInterrupt:  # Ctrl-C before the server installed its handlers
        code = 128 + 2
    sys.exit(code)


def _fail(message: str) -> None:
    sys.stderr.write(f"ferrule: error: {message}\n")
    sys.stderr.flush()


def _run(inv: Invocation) -> int:
    s = inv.settings
    if inv.print_config:
        for warning in inv.warnings:
            sys.stderr.write(f"ferrule: warning: {warning}\n")
        sys.stdout.write(format_config(s))
        return EXIT_OK
    config.apply_env(s.raw_env)
    try:
        logs.setup(s)  # --log-config, --error-logfile: before the application is imported
    except settings.SettingError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    for warning in inv.warnings:
        logging.getLogger(logs.ERROR_LOGGER).warning("%s", warning)
    try:
        loader.prepare_import(s.chdir, s.pythonpath, inv.app_dirs)
    except OSError as exc:
        _fail(f"--chdir {s.chdir}: {exc.strerror or exc}")
        return EXIT_USAGE
    if workers.needs_master(s) and not inv.check_config:
        return _run_master(s, inv.hooks)
    if not inv.check_config:
        # A single process: on_starting comes before it imports the application.
        try:
            inv.hooks.starting(s, lambda: 1, master=False)
        except HookError as exc:
            _fail(str(exc))
            return EXIT_ERROR
    try:
        app = loader.load_app(s.wsgi_app)
    except loader.AppLoadError as exc:
        sys.stderr.write(exc.details)
        _fail(f"failed to load the application {s.wsgi_app!r}: {exc}")
        return EXIT_APP_LOAD
    # Again: the app's own logging setup may have disabled our loggers (dictConfig's
    # disable_existing_loggers).
    logs.configure(s.log_level, s.error_logfile, s.log_format)
    if inv.check_config:
        return EXIT_OK
    return _guarded(lambda: server.run(app, s, inv.hooks), "the server")


def _run_master(s: settings.Settings, hooks: Hooks) -> int:
    """A master and its workers; each worker imports the app (or the master, with preload)."""
    assert s.wsgi_app is not None
    source = workers.AppSource(target=s.wsgi_app, preload=s.preload)
    try:
        return _guarded(lambda: workers.run(source, s, hooks), "the master")
    except loader.AppLoadError as exc:  # preload
        sys.stderr.write(exc.details)
        _fail(f"failed to load the application {s.wsgi_app!r}: {exc}")
        return EXIT_APP_LOAD


def _guarded(run: Callable[[], int | None], what: str) -> int:
    """Runs ``run`` and maps how it ends to an exit code: its own (or 0), 1 with a message
    on a startup error (a bind failure, a missing core), 1 with the traceback on anything
    else. Application load errors pass through to the caller."""
    try:
        code = run()
    except loader.AppLoadError:
        raise
    except _STARTUP_ERRORS as exc:
        _fail(str(exc))
        return EXIT_ERROR
    except Exception:
        sys.stderr.write(traceback.format_exc())
        _fail(f"{what} stopped with an error")
        return EXIT_ERROR
    return EXIT_OK if code is None else code


def format_config(s: settings.Settings) -> str:
    """The resolved settings as a TOML config file (``bind`` already includes host/port)."""
    lines = []
    for setting in settings.SETTINGS:
        value = s[setting.name]
        if not setting.in_config or setting.name in ("host", "port"):
            continue
        line = f"{setting.name} = {settings.format_value(value)}"
        lines.append(line if value is not None else f"# {setting.name} is not set")
    return "\n".join(lines) + "\n"
