"""``--reload``: notice that a file of the application changed, through inotify.

The master owns a ``FileWatcher``; workers report the module files they imported (outside the
standard library and site-packages), and ``reload_extra_files`` are added. The inotify
descriptor (the core's ``FileWatch``, ``src/supervise/files.rs``) sits in the master's
``select()``, so a change wakes the master at once and no thread is started.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from collections.abc import Iterable

from ferrule import server

log = logging.getLogger("ferrule.error")

SETTLE = 0.1


def _excluded_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(key, "") for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def module_files() -> list[str]:
    """Source files of the imported modules that belong to the application."""
    excluded = _excluded_dirs()
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not os.path.isabs(path):
            continue
        real = os.path.realpath(path)
        if not real.startswith(excluded) and os.path.isfile(real):
            files.add(real)
    return sorted(files)


class FileWatcher:
    """Collect changes of the watched files; hand them out once an editor's save settled.

    A save is often several events (write, rename, chmod); they are gathered until none came
    for ``SETTLE`` seconds, so one save makes one reload.
    """

    def __init__(self, paths: Iterable[str] = ()):
        self._watch = server.import_core().FileWatch()
        self._pending: set[str] = set()
        self._due = 0.0
        self.add(paths)

    def add(self, paths: Iterable[str]) -> None:
        for path in paths:
            try:
                self._watch.add([path])
            except OSError as exc:
                log.warning("--reload: %s", exc)

    def __len__(self) -> int:
        return len(self._watch)

    def fileno(self) -> int:
        return self._watch.fileno()

    def collect(self, now: float) -> None:
        """Read the pending events (call when ``fileno()`` is readable)."""
        changed = self._watch.changed()
        if changed:
            self._pending.update(changed)
            self._due = now + SETTLE

    def settled(self, now: float) -> list[str]:
        """The changed files, once no change came for ``SETTLE`` seconds; else []."""
        if not self._pending or now < self._due:
            return []
        found, self._pending = sorted(self._pending), set()
        return found
