"""Type stub for the Rust core (``ferrule._ferrule``); kept honest by mypy.stubtest."""

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, final, overload

__all__ = [
    "FileWatch",
    "FileWrapper",
    "InputStream",
    "METRICS_SIZE",
    "Server",
    "StartResponse",
    "__version__",
    "check_access_format",
    "read_metrics",
]
__version__: str
METRICS_SIZE: int
"""Bytes of one process's metrics region in the heartbeat file (src/server/metrics.rs)."""

@final
class Server:
    """The HTTP/1.1 server: owns dups of the listening sockets and the app threads."""

    def __new__(
        cls, app: Callable[..., Any], fds: Sequence[int], config: dict[str, Any]
    ) -> Server: ...
    def run(self, wakeup_fd: int | None = None) -> None:
        """Serve until ``stop()``; Python signal handlers run when ``wakeup_fd`` is readable."""
    def stop(self, graceful: bool = True) -> None: ...
    def reload_tls(self) -> None:
        """Read the TLS certificate and key again (SIGHUP); new connections use them."""
    def reopen_logs(self) -> None:
        """Open the access-log file again (SIGUSR1, after logrotate moved it)."""
    def metrics(self) -> dict[str, Any] | None:
        """The request metrics (``metrics`` in the config), or None without them: keys
        ``requests`` ({(method, status): count}), ``duration_bounds`` (seconds),
        ``duration_buckets`` (per bucket, +Inf last), ``duration_sum_ns``, ``in_flight``,
        ``connections``."""

def check_access_format(spec: str) -> None:
    """Raise ValueError if ``spec`` is not a valid access-log format."""

def read_metrics(fd: int, offset: int) -> dict[str, Any]:
    """A worker's metrics region at ``offset`` in the heartbeat file ``fd`` (live, or the last
    values of a worker that exited), as ``Server.metrics()`` returns them."""

@final
class StartResponse:
    """The ``start_response`` callable given to the app (PEP 3333).

    It returns itself as the ``write(data)`` callable: called with one argument, it writes.
    """

    @overload
    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        /,
        exc_info: tuple[Any, Any, Any] | None = None,
    ) -> StartResponse: ...
    @overload
    def __call__(self, data: bytes, /) -> None: ...
    def write(self, data: bytes) -> None: ...

@final
class InputStream:
    """``wsgi.input``: the request body, streamed from the socket."""

    def read(self, size: int | None = ...) -> bytes: ...
    def readline(self, size: int | None = ...) -> bytes: ...
    def readlines(self, hint: int | None = ...) -> list[bytes]: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def readable(self) -> bool: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

@final
class FileWrapper:
    """``wsgi.file_wrapper``: sent with sendfile(2) when it wraps a real file."""

    @property
    def filelike(self) -> Any: ...
    @property
    def blksize(self) -> int: ...
    def __new__(cls, filelike: Any, blksize: int = ...) -> FileWrapper: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...

@final
class FileWatch:
    """``--reload``: inotify on the directories of the watched files."""

    def __new__(cls) -> FileWatch: ...
    def add(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Watch more files; paths already watched are ignored."""
    def changed(self) -> list[str]:
        """The watched files changed since the last call (never blocks)."""
    def fileno(self) -> int: ...
    def __len__(self) -> int: ...
