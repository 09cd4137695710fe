"""Where a worker gets its WSGI application.

Three cases: the workers import the TARGET themselves (the default: a worker forked after a
reload imports the code as it is on disk now); the master imported it before forking
(``--preload``: a reload imports it again in the master); or ``serve(app)`` was handed the
application object (a reload restarts the workers with that same object).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

from ferrule import loader

App = Callable[..., Any]


class AppSource:
    def __init__(self, target: str | None = None, app: App | None = None, preload: bool = False):
        if (target is None) == (app is None):
            raise ValueError("give either a target or an application object")
        self.target = target
        self.preload = preload and target is not None
        self._app = app
        self._previous: App | None = None
        self._base_modules: set[str] = set()

    @classmethod
    def fixed(cls, app: App) -> AppSource:
        return cls(app=app)

    @property
    def name(self) -> str:
        """The TARGET, or a description of the given object (for log lines)."""
        return self.target if self.target is not None else repr(self._app)

    @property
    def reimports(self) -> bool:
        """Whether a reload picks up new code (False for an object given to ``serve()``)."""
        return self.target is not None

    def load_in_master(self) -> None:
        """With ``preload``, import the application now; raise ``loader.AppLoadError``."""
        if self.preload and self._app is None:
            self._base_modules = set(sys.modules)
            self._app = loader.load_app(self._target())

    def load_in_worker(self) -> App:
        """The application for a freshly forked worker; may raise ``loader.AppLoadError``."""
        if self._app is not None:
            return self._app
        return loader.load_app(self._target())

    def reload_in_master(self) -> None:
        """With ``preload``, import the application again, dropping the modules it imported.

        On failure the previous application stays in place and AppLoadError is raised.
        """
        if not self.preload:
            return
        saved = dict(sys.modules)
        for name in [n for n in sys.modules if n not in self._base_modules]:
            del sys.modules[name]
        importlib.invalidate_caches()
        try:
            app = loader.load_app(self._target())
        except BaseException:
            sys.modules.clear()
            sys.modules.update(saved)
            raise
        self._previous, self._app = self._app, app

    def rollback(self) -> None:
        """Go back to the application before the last ``reload_in_master()`` (a failed reload)."""
        if self._previous is not None:
            self._app, self._previous = self._previous, None

    def commit(self) -> None:
        """The last reload worked: drop the previous application."""
        self._previous = None

    def _target(self) -> str:
        assert self.target is not None
        return self.target
