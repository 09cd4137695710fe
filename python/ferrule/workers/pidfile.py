"""``--pid FILE``: the process id of the master (or single process), removed on exit."""

from __future__ import annotations

import os


class PidFileError(OSError):
    """The pid file cannot be written, or names a process that is still running."""


class PidFile:
    """Write ``os.getpid()`` to ``path`` atomically; ``remove()`` only if it is still ours."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.pid = 0

    def create(self) -> None:
        pid = os.getpid()
        other = _read_pid(self.path)
        if other and other != pid and _alive(other):
            raise PidFileError(
                f"pid file {self.path}: process {other} is still running "
                "(another ferrule? remove the file if it is stale)"
            )
        tmp = f"{self.path}.{pid}.tmp"
        try:
            with open(tmp, "w", encoding="ascii") as f:
                f.write(f"{pid}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise PidFileError(f"cannot write pid file {self.path}: {exc.strerror or exc}") from exc
        self.pid = pid

    def remove(self) -> None:
        if self.pid and _read_pid(self.path) == self.pid:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.pid = 0


def _read_pid(path: str) -> int:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(32).strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
