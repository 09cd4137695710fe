"""Load the WSGI application named by a TARGET such as ``pkg.mod:app`` or ``mod:create_app()``.

Grammar (the part after ``:`` is parsed with :mod:`ast`, never evaluated):

- ``module``                  -> ``module:application``
- ``module:name.attr``        -> an attribute path
- ``module:factory(1, x="y")``-> call the factory; every argument must be a Python literal
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_CALLABLE = "application"


class AppLoadError(Exception):
    """The application could not be imported or found (the CLI exits with code 4).

    ``details`` holds the formatted traceback when user code raised, else "".
    """

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Target:
    """A parsed TARGET."""

    text: str
    module: str
    attrs: tuple[str, ...]
    call: bool = False
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_target(text: str) -> Target:
    """Parse a TARGET; raise ValueError with a clear message if it is malformed."""
    spec = text.strip()
    if not spec:
        raise ValueError("expected module:callable, got an empty string")
    module, sep, expr = spec.partition(":")
    module = module.strip()
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"{spec!r}: {module!r} is not a module name (expected module:callable)")
    if not sep:
        return Target(spec, module, (DEFAULT_CALLABLE,))
    expr = expr.strip()
    if not expr:
        raise ValueError(f"{spec!r}: nothing after ':' (expected module:callable)")
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise ValueError(
            f"{spec!r}: {expr!r} is not a name, a dotted name or a call like create_app()"
        ) from None
    if isinstance(node, ast.Call):
        args = tuple(_literal(spec, arg) for arg in node.args)
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError(f"{spec!r}: **kwargs are not allowed in a factory call")
            kwargs[kw.arg] = _literal(spec, kw.value)
        return Target(spec, module, _dotted(spec, node.func), True, args, kwargs)
    return Target(spec, module, _dotted(spec, node))


def _literal(spec: str, node: ast.expr) -> Any:
    if isinstance(node, ast.Starred):
        raise ValueError(f"{spec!r}: *args are not allowed in a factory call")
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(
            f"{spec!r}: factory argument {ast.unparse(node)} is not a literal "
            "(use strings, numbers, True/False/None, tuples, lists or dicts)"
        ) from None


def _dotted(spec: str, node: ast.expr) -> tuple[str, ...]:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ValueError(
            f"{spec!r}: {ast.unparse(node)} is not a name, a dotted name or a call like "
            "create_app()"
        )
    names.append(node.id)
    return tuple(reversed(names))


def prepare_import(
    chdir: str | None = None, pythonpath: Sequence[str] = (), app_dirs: Sequence[str] = ()
) -> None:
    """Change directory, then put ``app_dirs``, ``pythonpath`` and the cwd first on sys.path."""
    if chdir:
        os.chdir(chdir)
    entries = [*app_dirs, *(os.path.abspath(p) for p in pythonpath), os.getcwd()]
    for entry in reversed(entries):
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
    importlib.invalidate_caches()


def load_app(target: str | Target) -> Callable[..., Any]:
    """Import and return the WSGI callable; raise ValueError (bad TARGET) or AppLoadError."""
    t = target if isinstance(target, Target) else parse_target(target)
    try:
        obj: Any = importlib.import_module(t.module)
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == t.module.split(".")[0]:
            message = f"{exc} (check the current directory, --chdir or --pythonpath)"
        else:
            message = f"importing {t.module!r} raised {type(exc).__name__}: {exc}"
        raise AppLoadError(message, _user_traceback(exc)) from exc
    path = t.module
    for name in t.attrs:
        try:
            obj = getattr(obj, name)
        except AttributeError as exc:
            if hasattr(exc, "obj") and exc.obj is not obj:  # raised inside a property
                raise AppLoadError(f"error getting {path}.{name}", _user_traceback(exc)) from exc
            raise AppLoadError(f"{path!r} has no attribute {name!r}") from exc
        except Exception as exc:
            raise AppLoadError(f"error getting {path}.{name}", _user_traceback(exc)) from exc
        path = f"{path}:{name}" if path == t.module else f"{path}.{name}"
    if t.call:
        if not callable(obj):
            raise AppLoadError(f"{path!r} is not callable, so it cannot be called as a factory")
        try:
            obj = obj(*t.args, **t.kwargs)
        except Exception as exc:
            raise AppLoadError(
                f"the factory {t.text!r} raised {type(exc).__name__}: {exc}",
                _user_traceback(exc),
            ) from exc
        path = t.text
    if not callable(obj):
        raise AppLoadError(f"{path!r} is not callable (it is a {type(obj).__name__})")
    if not t.call and not _accepts_two_args(obj):
        raise AppLoadError(
            f"{path!r} does not take (environ, start_response); if it is an application "
            f"factory, call it: '{t.text}()'"
        )
    return obj


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the leading frames of ferrule and importlib."""
    internal = {__file__, importlib.__file__}
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename not in internal and not filename.startswith("<frozen importlib"):
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _accepts_two_args(obj: Any) -> bool:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # no signature (a builtin or extension type): trust it
        return True
    try:
        sig.bind(None, None)
    except TypeError:
        return False
    return True
