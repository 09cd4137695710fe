"""Config files: TOML, YAML (which also understands the seed server's ``app.yaml`` keys),
and gunicorn's Python config files (``gunicorn_conf.py`` reads those).

Keys are setting names from ``settings.py``, with dashes or underscores. The application may
be given as ``app = "module:callable"`` (or ``wsgi_app``). YAML files may instead use the seed
server's keys, e.g.::

    address: 0.0.0.0        # -> host
    port: 9989              # -> port
    concurrency: 5          # -> threads
    backlog: 100            # -> backlog
    timeout: 5              # -> header_timeout
    app-loc: /srv/pyapp     # directory put first on sys.path
    app-module: wsgi        # with `app`, the TARGET wsgi:application
    app: application
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from ferrule import gunicorn_conf, loader
from ferrule.settings import SETTINGS, Layer, SettingError, check, normalize_key

YAML_SUFFIXES = (".yaml", ".yml")
TOML_SUFFIXES = (".toml",)
PYTHON_SUFFIXES = (".py",)

APP_LOC = "app_loc"
APP_MODULE = "app_module"

SEED_KEYS_DOC: tuple[tuple[str, str], ...] = (
    (
        "app-loc",
        "A directory put first on `sys.path` (the application's location). Relative "
        "paths are relative to the config file. If the directory is a package (it has "
        "`__init__.py`), its parent directory is added right after it, so the package's own "
        "absolute imports such as `pyapp.settings` work.",
    ),
    (
        "app-module",
        "The module to import from there; with `app` it forms the target `app-module:app`.",
    ),
    (
        "app",
        "With `app-module`: the name of the callable in it (default `application`). "
        "Without `app-module`: a full target such as `pkg.module:callable`.",
    ),
)


class ConfigError(SettingError):
    """The config file cannot be read, or has an unknown key or a bad value."""


@dataclass(frozen=True)
class ConfigFile:
    """What a config file sets: validated setting values, plus the seed's app location, and
    for a gunicorn Python file its server hooks and the warnings about what it ignored."""

    path: str
    values: Mapping[str, Any]
    app_dirs: tuple[str, ...] = ()
    hooks: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def layer(self) -> Layer:
        return Layer(self.path, self.values, style="config")


def load(path: str) -> ConfigFile:
    """Read and validate a config file; raise ConfigError naming the file and key on problems."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in PYTHON_SUFFIXES:
        try:
            read = gunicorn_conf.load(path)
        except SettingError as exc:
            raise ConfigError(str(exc)) from None
        return ConfigFile(path, read.values, hooks=read.hooks, warnings=read.warnings)
    if suffix not in TOML_SUFFIXES + YAML_SUFFIXES:
        raise ConfigError(
            f"{path}: unsupported config file type {suffix or '(none)'!r}; "
            "use .toml, .yaml, .yml or .py"
        )
    is_yaml = suffix in YAML_SUFFIXES
    try:
        data = _read_yaml(path) if is_yaml else _read_toml(path)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return _interpret(path, data, is_yaml)


def _read_toml(path: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11 only
        import tomli as tomllib
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _read_yaml(path: str) -> Any:
    import yaml

    with open(path, encoding="utf-8") as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def _key_table(is_yaml: bool) -> dict[str, str]:
    """Canonical config key -> setting name."""
    table: dict[str, str] = {}
    for s in SETTINGS:
        for key in s.config_keys():
            table[key] = s.name
        if is_yaml and s.seed_key and s.in_config:
            table.setdefault(s.seed_key, s.name)
    return table


def _interpret(path: str, data: dict[Any, Any], is_yaml: bool) -> ConfigFile:
    table = _key_table(is_yaml)
    raw: dict[str, tuple[str, Any]] = {}  # canonical key -> (key as written, value)
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}: setting names must be strings, got {key!r}")
        canon = normalize_key(key)
        if canon in raw:
            raise ConfigError(f"{path}: {key!r} is given twice (as {raw[canon][0]!r} too)")
        raw[canon] = (key, value)

    app_dirs: tuple[str, ...] = ()
    values: dict[str, Any] = {}
    written: dict[str, str] = {}  # setting name -> key as written

    def put(name: str, key: str, value: Any) -> None:
        if name in values:
            raise ConfigError(f"{path}: {key!r} and {written[name]!r} both set {name!r}")
        try:
            values[name] = check(name, value, f"{path}: {key!r}")
        except SettingError as exc:
            raise ConfigError(str(exc)) from None
        written[name] = key

    if is_yaml and APP_LOC in raw:
        app_dirs = _app_dirs(path, *raw.pop(APP_LOC))
    if is_yaml and APP_MODULE in raw:
        module_key, module = raw.pop(APP_MODULE)
        app_key, app = raw.pop("app", ("app", loader.DEFAULT_CALLABLE))
        put("wsgi_app", f"{module_key}/{app_key}", _seed_target(path, module_key, module, app))

    for canon, (key, value) in raw.items():
        name = table.get(canon)
        if name is None:
            raise ConfigError(_unknown_key(path, key, canon, table))
        put(name, key, value)
    return ConfigFile(path, values, app_dirs)


def _unknown_key(path: str, key: str, canon: str, table: Mapping[str, str]) -> str:
    if canon == "config":
        return f"{path}: 'config' cannot be set inside a config file"
    message = f"{path}: unknown setting {key!r}"
    close = difflib.get_close_matches(canon, list(table), n=1)
    return f"{message} (did you mean {close[0]!r}?)" if close else message


def _seed_target(path: str, module_key: str, module: Any, app: Any) -> str:
    if not isinstance(module, str) or not module.strip():
        raise ConfigError(f"{path}: {module_key!r}: expected a module name, got {module!r}")
    if not isinstance(app, str) or not app.strip():
        raise ConfigError(f"{path}: 'app': expected the name of a callable, got {app!r}")
    module = module.strip()
    if module.endswith(".py"):
        module = module[: -len(".py")]
    return f"{module}:{app.strip()}"


def _app_dirs(path: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {key!r}: expected a directory, got {value!r}")
    base = os.path.dirname(os.path.abspath(path))
    location = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if not os.path.isdir(location):
        raise ConfigError(f"{path}: {key!r}: {value!r} is not a directory")
    if os.path.isfile(os.path.join(location, "__init__.py")):
        return (location, os.path.dirname(location))
    return (location,)


def apply_env(raw_env: Iterable[str]) -> None:
    """Set the ``raw_env`` variables (``KEY=VALUE``) in this process's environment."""
    for item in raw_env:
        key, _, value = item.partition("=")
        os.environ[key] = value
