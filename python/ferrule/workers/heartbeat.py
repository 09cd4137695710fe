"""The heartbeat file: one slot per worker, written by the Rust core, read here.

The master creates an anonymous memory file (``memfd_create``) before forking; each worker
passes the fd and its record's offset to ``_ferrule.Server`` (``heartbeat_fd`` and
``heartbeat_offset``). The core's watcher thread, which needs no GIL, rewrites the record every
250 ms while the server runs, so a worker whose application holds the GIL forever still beats,
and a worker that is frozen (or dead) does not. No temp-file timestamps are involved
(gunicorn issue #1194).

Record layout, little-endian: u64 update counter @0, u64 CLOCK_MONOTONIC ns of this write @8,
u64 CLOCK_MONOTONIC ns at which the oldest request now inside the app started (0 if none) @16,
u64 requests served @24, u32 writer pid @32, the oldest running request's line @64..320
(NUL-padded).

With ``--metrics-bind``, each slot also holds the worker's request metrics: a slot is then the
512-byte record followed, at ``METRICS_AT`` (512), by the core's metrics region
(``_ferrule.METRICS_SIZE`` bytes of u64 counters, layout in src/server/metrics.rs), rounded
up to whole pages. The worker maps that region (``metrics_offset``) and counts into it with
atomic adds; the master reads it with ``_ferrule.read_metrics`` at each scrape, and once
more after the worker exited, to fold its last values into the totals (``ferrule.metrics``).
Without metrics a slot is just the 512-byte record.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from typing import IO, Any

RECORD_SIZE = 512
METRICS_AT = RECORD_SIZE
"""Where a slot's metrics region starts (8-aligned, as the core requires)."""
_PAGE = 4096
_HEAD = struct.Struct("<QQQQI")
_LINE = slice(64, 320)
_INITIAL_RECORDS = 64


@dataclass(frozen=True)
class Beat:
    """One worker's record as last written."""

    counter: int
    time_ns: int
    request_start_ns: int
    served: int
    pid: int
    request_line: str


class HeartbeatFile:
    """The shared file and its record slots (offsets), handed out to workers and taken back."""

    def __init__(self, metrics_size: int = 0) -> None:
        """``metrics_size``: bytes of a metrics region per slot (0: no metrics)."""
        self.slot_size = RECORD_SIZE
        if metrics_size:
            self.slot_size = -(-(METRICS_AT + metrics_size) // _PAGE) * _PAGE
        self._file: IO[Any] | None = None
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("ferrule-heartbeat", os.MFD_CLOEXEC)
        else:  # not Linux: an unlinked temporary file does the same job
            self._file = tempfile.TemporaryFile()
            self.fd = self._file.fileno()
        self._size = 0
        self._free: list[int] = []
        self._grow(_INITIAL_RECORDS)

    def _grow(self, records: int) -> None:
        start = self._size
        self._size += records * self.slot_size
        os.ftruncate(self.fd, self._size)
        self._free.extend(range(self._size - self.slot_size, start - 1, -self.slot_size))

    def allocate(self) -> int:
        """A free slot's offset (its record's), zeroed: nothing stale is read before the
        worker writes, and a new worker's counters start at 0."""
        if not self._free:
            self._grow(max(_INITIAL_RECORDS, self._size // self.slot_size))
        offset = self._free.pop()
        os.pwrite(self.fd, bytes(self.slot_size), offset)
        return offset

    @staticmethod
    def metrics_offset(offset: int) -> int:
        """Where the metrics region of the slot at ``offset`` starts."""
        return offset + METRICS_AT

    def release(self, offset: int) -> None:
        self._free.append(offset)

    def read(self, offset: int) -> Beat:
        data = os.pread(self.fd, RECORD_SIZE, offset).ljust(RECORD_SIZE, b"\0")
        counter, time_ns, start_ns, served, pid = _HEAD.unpack_from(data)
        line = data[_LINE].split(b"\0", 1)[0].decode("latin-1")
        return Beat(counter, time_ns, start_ns, served, pid, line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        else:
            os.close(self.fd)
        self.fd = -1
