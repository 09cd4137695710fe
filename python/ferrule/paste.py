"""PasteDeploy server runner, for Pyramid's ``pserve`` and ``[server:main]`` sections::

    [server:main]
    use = egg:ferrule            # or egg:ferrule#main
    host = 0.0.0.0
    port = 6543
    threads = 8
    workers = 2

pyproject.toml registers ``run`` as the ``paste.server_runner`` entry point ``main``. The
section's keys are ferrule setting names (dashes or underscores), gunicorn's names for the
settings ferrule shares (``timeout``, ``keepalive``, ``loglevel``, ...), or waitress's
``listen`` (space-separated addresses, meaning ``bind``). Values are strings, checked by the
same validators as the command line and config files; settings that take several values
(``bind``, ``raw_env``, ``reload_extra_files``) take them separated by spaces or new lines.
``config = FILE`` reads a ferrule config file too (a gunicorn ``.py`` file brings its server
hooks), and gunicorn's hook names take ``module.function`` strings (``post_fork =
myapp.hooks.post_fork``). Settings about loading the application (``wsgi_app``, ``preload``,
``reload``, ``chdir``... anything ``serve()`` does not take) are refused: PasteDeploy loads
it.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from typing import Any, Callable

from ferrule import gunicorn_conf, logs, server, settings

log = logging.getLogger(logs.ERROR_LOGGER)

SECTION = "[server]"
SPLIT = ("bind", "raw_env", "reload_extra_files")
"""Settings whose ini value is a whitespace-separated list."""
ALIASES = {"listen": "bind"}
"""waitress's keys."""


def run(wsgi_app: Callable[..., Any], global_conf: Mapping[str, Any], **local_conf: Any) -> None:
    """Serve ``wsgi_app`` with the settings of the ini section (blocks until stopped)."""
    source = f"{global_conf.get('__file__') or 'the ini file'} {SECTION}"
    values, hooks, warnings = options(local_conf, source)
    server.serve_layer(
        wsgi_app, settings.Layer(source, values, style="config"), hooks, tuple(warnings)
    )


def _table() -> dict[str, str]:
    """ini key (canonical) -> setting name: ferrule's names first, then gunicorn's."""
    table: dict[str, str] = {}
    for row in gunicorn_conf.GUNICORN:
        setting = gunicorn_conf.target(row)
        if setting is not None and setting.in_serve:
            table[row.gunicorn] = setting.name
    for s in settings.SETTINGS:
        if s.in_serve:
            for key in (s.name, *s.config_aliases):
                table[key] = s.name
    table.update(ALIASES)
    return table


def options(
    local_conf: Mapping[str, Any], source: str
) -> tuple[dict[str, Any], dict[str, Callable[..., Any]], list[str]]:
    """The ini section's keys as validated ferrule settings, the gunicorn server hooks it
    names (``pre_request = mypkg.hooks.pre_request``), and warnings about the keys that are
    gunicorn settings ferrule does not have. Raise SettingError naming the key."""
    table = _table()
    values: dict[str, Any] = {}
    hooks: dict[str, Callable[..., Any]] = {}
    written: dict[str, str] = {}
    warnings: list[str] = []
    for key, raw in local_conf.items():
        canon = settings.normalize_key(key)
        name = table.get(canon)
        if name is None:
            row = gunicorn_conf.BY_GUNICORN.get(canon)
            setting = settings.BY_NAME.get(canon)
            if row is not None and row.ferrule == gunicorn_conf.HOOK:
                try:
                    hooks[canon] = gunicorn_conf.check_hook(canon, raw)
                except ValueError as exc:
                    raise settings.SettingError(f"{source}: {key!r}: {exc}") from None
                continue
            if row is not None and gunicorn_conf.target(row) is None:
                warnings.append(gunicorn_conf.unsupported(source, key, row))
                continue
            if setting is not None or row is not None:
                raise settings.SettingError(
                    f"{source}: {key!r} cannot be set here: PasteDeploy loads the application "
                    "(put it in a config file given as 'config', or on the command line)"
                )
            message = f"{source}: unknown setting {key!r}"
            close = difflib.get_close_matches(canon, list(table), n=1)
            raise settings.SettingError(
                f"{message} (did you mean {close[0]!r}?)" if close else message
            )
        if name in values:
            raise settings.SettingError(
                f"{source}: {key!r} and {written[name]!r} both set {name!r}"
            )
        value = raw.split() if name in SPLIT and isinstance(raw, str) else raw
        values[name] = settings.check(name, value, f"{source}: {key!r}")
        written[name] = key
    return values, hooks, warnings
