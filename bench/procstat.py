"""What a server process tree costs, read from /proc: CPU time, context switches, memory.

The tree is the process and all its descendants (workers), every thread included. Numbers of
processes or threads that exit during a run are lost, as in ../shared/bench/peers.sh.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

HZ = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants, parents first."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def _status_fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in names:
                    found[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole tree, in seconds (clock-tick resolution)."""
    user, kernel = cpu_split(pid)
    return user + kernel


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole tree, in seconds: user space and kernel."""
    user = kernel = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                # the command name may contain spaces: fields start after the last ')'
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        user += int(fields[11])  # utime (field 14)
        kernel += int(fields[12])  # stime (field 15)
    return user / HZ, kernel / HZ


def context_switches(pid: int) -> int:
    """voluntary + nonvoluntary context switches of every thread of the tree."""
    total = 0
    names = ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
    for p in tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            total += sum(_status_fields(f"/proc/{p}/task/{tid}/status", names).values())
    return total


def rss_kib(pid: int) -> int:
    """Current resident memory of the tree (sum of VmRSS), KiB."""
    return sum(_status_fields(f"/proc/{p}/status", ("VmRSS",)).get("VmRSS", 0) for p in tree(pid))


def hwm_kib(pid: int) -> int:
    """Sum of each process's peak resident memory (VmHWM), KiB."""
    return sum(_status_fields(f"/proc/{p}/status", ("VmHWM",)).get("VmHWM", 0) for p in tree(pid))


@dataclass
class Snapshot:
    user_s: float
    kernel_s: float
    ctx: int

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.kernel_s

    @classmethod
    def take(cls, pid: int) -> Snapshot:
        return cls(*cpu_split(pid), context_switches(pid))


def accept_backlog(port: int) -> int | None:
    """Connections waiting in the accept queue of the TCP socket listening on ``port``: for a
    listening socket, /proc/net/tcp's rx_queue is that queue's length. ``None`` if no socket
    listens there (or /proc/net is not readable).

    The kernel lists listening sockets first and writes the table as it is read, so reading
    stops at the first other socket: with 10,000 idle connections open, reading the whole
    table every 0.1 s would take CPU from the load generator."""
    found = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, buffering=4096) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state, queues = fields[1], fields[3], fields[4]
                    if state != "0A":
                        break
                    if int(local.rpartition(":")[2], 16) == port:
                        found = (found or 0) + int(queues.partition(":")[2], 16)
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return found


class RssSampler:
    """Samples the tree's summed VmRSS every ``interval`` seconds in a thread; keeps the max.
    With a ``port``, also the most connections seen waiting in its accept queue."""

    def __init__(self, pid: int, interval: float = 0.1, port: int | None = None):
        self.pid = pid
        self.interval = interval
        self.port = port
        self.peak_kib = rss_kib(pid)
        self.peak_backlog: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib(self.pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            if self.port is not None:
                backlog = accept_backlog(self.port)
                if backlog is not None:
                    self.peak_backlog = max(self.peak_backlog or 0, backlog)
