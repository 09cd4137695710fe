"""Idle keep-alive connections held open against a server, as ../shared/bench/idle.py measures.

Each connection sends one request, reads the whole answer, and then stays open and silent.
The connections live in an asyncio loop on a thread of this process, so the load generator
can run meanwhile; ``alive()`` counts those the server has not closed.
"""

from __future__ import annotations

import asyncio
import resource
import threading
from typing import Any

OPEN_CONCURRENCY = 200


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it) towards ``wanted``.

    The soft limit goes up to the hard one; the hard one too when allowed (root). Returns the
    soft limit in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


async def _answer(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)


class IdleConnections:
    """``count`` idle keep-alive connections to ``host:port``; use as a context manager."""

    def __init__(self, host: str, port: int, count: int, open_timeout: float = 60.0):
        self.host = host
        self.port = port
        self.count = count
        self.open_timeout = open_timeout
        self.errors = 0
        self._conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> IdleConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._close_all(), 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def open(self) -> int:
        """Open the connections (bounded by ``open_timeout`` in all); return how many are up."""
        self._call(self._open_all(), self.open_timeout + 30)
        return len(self._conns)

    def alive(self) -> int:
        """How many of the opened connections the server has not closed."""
        return self._call(self._alive(), 30)

    async def _alive(self) -> int:
        await asyncio.sleep(0)  # let pending EOFs be processed first
        return sum(not w.transport.is_closing() for _, w in self._conns)

    async def _open_all(self) -> None:
        sem = asyncio.Semaphore(OPEN_CONCURRENCY)
        deadline = self._loop.time() + self.open_timeout
        request = f"GET / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()

        async def one() -> None:
            async with sem:
                left = deadline - self._loop.time()
                if left <= 0:
                    self.errors += 1
                    return
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), left
                    )
                except (OSError, asyncio.TimeoutError):
                    self.errors += 1
                    return
                try:
                    writer.write(request)
                    await asyncio.wait_for(_answer(reader), max(deadline - self._loop.time(), 0))
                except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                    self.errors += 1
                    writer.close()
                    return
                self._conns.append((reader, writer))

        await asyncio.gather(*(one() for _ in range(self.count)))

    async def _close_all(self) -> None:
        for _, writer in self._conns:
            writer.close()
        self._conns.clear()
        await asyncio.sleep(0)
