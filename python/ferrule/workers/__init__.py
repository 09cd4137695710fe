"""Pre-fork worker processes: a master (``arbiter.py``) supervising N workers (``worker.py``).

One file per concern: the master's loop and signals (``arbiter``), the worker process
(``worker``), where a worker gets the application (``appsource``), the heartbeat records the
Rust core writes (``heartbeat``), ``--reload``'s file watcher (``reloader``), systemd's socket
activation and ``sd_notify`` (``systemd``) and ``--pid`` (``pidfile``). See
docs/deployment.md for the signals and exit codes.
"""

from __future__ import annotations

from ferrule.hooks import Hooks
from ferrule.settings import Settings
from ferrule.workers.appsource import AppSource

__all__ = ["AppSource", "needs_master", "run"]


def needs_master(s: Settings) -> bool:
    """Whether these settings need a master process (else one process serves by itself)."""
    return bool(s.workers > 1 or s.master or s.max_requests > 0 or s.reload)


def run(source: AppSource, resolved: Settings, hooks: Hooks | None = None) -> int:
    """Run the master until it stops; return the exit code (0, or 3/4 if workers fail to boot).

    Raises ``loader.AppLoadError`` (``preload``), ``sockets.BindError``, ``PidFileError``,
    ``server.CoreUnavailable`` or ``hooks.HookError`` (``on_starting``, ``when_ready``)
    before any worker starts.
    """
    from ferrule.workers.arbiter import Arbiter

    return Arbiter(source, resolved, hooks).run()
