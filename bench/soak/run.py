#!/usr/bin/env python3
"""Soak test: millions of mixed requests against one real ferrule server; fails on any
unexpected answer, on memory growth, on a leaked file descriptor, or if the server dies.

    python bench/soak/run.py                  # 2,000,000 requests, one process, --threads 8
    python bench/soak/run.py --workers 2      # the same against a master and 2 workers
    python bench/soak/run.py --short          # ~30,000 requests, ~20 s (make soak-smoke)
    python bench/soak/run.py --json out.json  # and write the summary as JSON

The server is ``python -m ferrule --threads 8 app:app`` with bench/soak/app.py, which reuses
bench/apps (hello, the Flask app) and adds uploads, streams, errors and counters. Client
processes (bench/soak/client.py) send a seeded random mix and check every answer. The run has
two phases: a warm-up (10 % of the requests) and the rest. After each phase every client hangs
up, the server is left to settle, and its memory (VmRSS, summed over all its processes, after
malloc_trim; see TRIM) and open file descriptors (/proc/PID/fd, all processes) are read; both
are also sampled every second. The server runs with two glibc tunables set (see ARENA_MAX).

The run fails when the end RSS exceeds the warm-up RSS by more than 5 %, when the fd count
after the run differs from the one after the warm-up, when a process of the server died or
was replaced, when the app's iterables were not all closed, when the server log shows an error
the mix did not ask for, or on any unexpected answer. Never on a speed.
See docs/soak.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import queue
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path.insert(0, str(BENCH))  # reuse the suite's modules: server start/stop, /proc readings

import machine  # noqa: E402
import procstat  # noqa: E402
import runner  # noqa: E402
from client import EXPECTED_FAILURES, MIX, PIPELINE_DEPTH, Tally, client_process  # noqa: E402
from servers import HOST, Launch  # noqa: E402

DEFAULT_REQUESTS = 2_000_000
SHORT_REQUESTS = 30_000
WARMUP = 0.10
SHORT_WARMUP = 0.5
"""Share of the requests sent before the memory and fd baseline is taken.

The baseline must come after every allocator has reached its working size (glibc's arenas,
Python's obmalloc arenas, Flask's and the re module's caches), or what follows it looks like
growth. With 10 % of 2,000,000 that is 200,000 requests, plenty (with the glibc tunables of
ARENA_MAX). 10 % of --short's 30,000 is 3,000 requests, under 400 per server thread and a
handful of 1 MiB uploads in all: too few to be sure every path has run on every thread, so the
smoke run would fail on allocator noise now and then. Measured on the 2-core build machine
with MALLOC_ARENA_MAX=2 alone: a third (10,000) still left the baseline up to 1.3 MiB short of
where it settles (+3.6 % at the end of one run of five); half (15,000) never more than 0.3 MiB
(+0.1 to +0.9 %, four runs). With both tunables of ARENA_MAX, half: +0.2 to +0.3 % (three
runs). Half it is, which leaves 15,000 requests to measure.

Is 5 % meaningful at small counts? It bounds what a leak may cost in total, so what it can see
shrinks with the number of requests: on this ~36 MiB server 5 % is ~1.8 MiB, which over the
full run's 1,800,000 measured requests is ~1 byte per request (any real leak), but over
--short's 15,000 ~125 bytes per request: a leaked buffer, socket, environ or traceback, not a
leaked small object. So --short is a smoke run of the soak machinery that still catches gross
leaks, and the 2,000,000-request run is the leak test. The summary prints the growth per
request too, the number to compare across runs. The same 5 % is kept in both rather than a
tighter bound for the full run: the RSS at rest still moves by about 1 % between two readings
(glibc keeps some freed memory, Python frees its arenas only when empty).
"""
ARENA_MAX = 2
MMAP_THRESHOLD = 128 * 1024
"""glibc tunables given to the server: MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_
(--malloc-arena-max, --malloc-mmap-threshold; 0 leaves glibc's default).

The soak looks for leaks, memory that grows without bound; glibc's defaults add growth that is
bounded but comes late and in steps, bigger than 5 % of this ~35 MiB server:

- Arenas. By default glibc gives threads up to 8 arenas per core (here: one per server
  thread), and each arena grows to its working size (~2.5 MiB in this mix) only once its thread
  has run the biggest requests. ferrule's threads are not used evenly (the one holding the GIL
  serves most requests, the others mostly when the app blocks), so the RSS climbs long after
  any warm-up. MALLOC_ARENA_MAX=2 (the usual production setting for threaded Python servers)
  keeps two arenas, both busy from the first requests.
- The mmap threshold. Blocks of 128 KiB and more start out as their own mmap, unmapped when
  freed; but each such free raises the threshold (up to 32 MiB), after which 1 MiB request
  bodies come from the arenas, and an arena keeps its high-water mark: a new one is set each
  time more big bodies than ever before happen to be in flight at once. Setting the threshold
  (to its initial 128 KiB) turns that adjustment off.

Measured on the 2-core build machine, 2,000,000 requests each: with glibc's defaults the RSS
at rest went from 43.4 MiB after the warm-up to 49.0 MiB (+12.8 %), all of it between 200,000
and ~530,000 requests, then stayed at 48-50 MiB for the last 1,470,000; with MALLOC_ARENA_MAX=2
alone, +4.0 % (36.9 -> 38.4 MiB, in steps, the last at ~900,000 requests); with both (the
default here), +1.1 % (35.3 -> 35.7 MiB), flat under load from 240,000 requests on; see
docs/soak.md.
Run after run of one op at a time, with both set, found no op that grows the RSS. A leak shows
with any allocator setting: it grows without bound.
"""
TRIM = True
"""Before each reading of the RSS at rest, every worker runs malloc_trim(0) (POST /trim of
bench/soak/app.py), so glibc's cached free memory is not counted; --no-trim reads it as it is.
Both numbers are printed. Memory still allocated, i.e. leaked, cannot be trimmed."""
RSS_TOLERANCE = 0.05
SETTLE_TIMEOUT = 30.0
"""Seconds the server gets, after the clients hung up, for its fd count to come back."""
SETTLE_STABLE = 2.0
"""The fd count must hold this long to count as settled."""
STALL_TIMEOUT = 180.0
"""No request completed for this long: the run fails as stalled."""
LOG_RECORD_RE = re.compile(r"^\[[^]]+\] \[\d+\] \[([A-Z]+)\] (.*)$")
APP_ERROR_RE = re.compile(r"^Error handling request GET /(error|stream\?\S*fail=\d+) HTTP/1\.1$")


def _positive_int(text: str) -> int:
    n = int(text.replace("_", "").replace(",", ""))
    if n <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return n


def _fraction(text: str) -> float:
    x = float(text)
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return x


def _ops(text: str) -> dict[str, int]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in MIX]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown ops {unknown}; known: {', '.join(MIX)}")
    return {n: MIX[n] for n in names}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--requests",
        type=_positive_int,
        default=None,
        help=f"requests to send (default {DEFAULT_REQUESTS:,}; {SHORT_REQUESTS:,} with --short)",
    )
    p.add_argument(
        "--short",
        action="store_true",
        help=f"{SHORT_REQUESTS:,} requests, the first {SHORT_WARMUP * 100:.0f}%% as warm-up "
        "(~20 s): make soak-smoke",
    )
    p.add_argument(
        "--warmup",
        type=_fraction,
        default=None,
        help=f"share of the requests before the baseline (default {WARMUP}, "
        f"{SHORT_WARMUP} with --short)",
    )
    p.add_argument("--workers", "-w", type=int, default=1, help="ferrule --workers (default: 1)")
    p.add_argument("--threads", type=int, default=8, help="ferrule --threads (default: 8)")
    p.add_argument("--clients", type=int, default=4, help="client processes (default: 4)")
    p.add_argument(
        "--seed", type=int, default=1, help="seed of the clients' random mix (default: 1)"
    )
    p.add_argument(
        "--ops",
        type=_ops,
        default=None,
        help=f"run only these ops of the mix, comma-separated (to corner a leak): {', '.join(MIX)}",
    )
    p.add_argument(
        "--rss-tolerance",
        type=float,
        default=RSS_TOLERANCE,
        help="allowed RSS growth from the warm-up to the end, as a fraction (default: 0.05)",
    )
    p.add_argument(
        "--malloc-arena-max",
        type=int,
        default=ARENA_MAX,
        help="MALLOC_ARENA_MAX for the server; 0: leave it unset, glibc's default (see "
        "ARENA_MAX in this file; default: 2)",
    )
    p.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        default=MMAP_THRESHOLD,
        help="MALLOC_MMAP_THRESHOLD_ for the server, bytes; 0: leave it unset, glibc's "
        "default, which rises "
        f"(default: {MMAP_THRESHOLD})",
    )
    p.add_argument(
        "--no-trim",
        dest="trim",
        default=TRIM,
        action="store_false",
        help="compare the RSS at rest as it is, glibc's cached free memory included "
        "(see TRIM in this file)",
    )
    p.add_argument(
        "--leak-bytes",
        type=int,
        default=0,
        help="self-check: the app keeps this many bytes per GET / (the run must fail)",
    )
    p.add_argument(
        "--leak-fd-every",
        type=int,
        default=0,
        help="self-check: the app leaks a file descriptor every N GET / (the run must fail)",
    )
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between samples (default: 1)"
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="the Python running `-m ferrule` (the project's venv when run from it)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the summary here")
    p.add_argument("--log", type=Path, metavar="FILE", help="keep the server's log here")
    return p


# --- reading the server from /proc -------------------------------------------------------------


def fd_count(pid: int) -> int:
    """Open file descriptors of the whole process tree."""
    total = 0
    for p in procstat.tree(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total


@dataclass
class Sample:
    t: float
    requests: int
    rss_kib: int
    fds: int
    pids: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 2),
            "requests": self.requests,
            "rss_kib": self.rss_kib,
            "fds": self.fds,
            "pids": self.pids,
        }


@dataclass
class Sampler:
    """Every ``interval`` s, in a thread: the tree's RSS, fds and pids, and the requests done."""

    server: runner.Server
    interval: float
    progress: Any = None
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def take(self) -> Sample:
        pid = self.server.pid
        done = sum(self.progress) if self.progress is not None else 0
        s = Sample(
            time.monotonic() - self.t0,
            done,
            procstat.rss_kib(pid),
            fd_count(pid),
            sorted(procstat.tree(pid)),
        )
        with self._lock:
            self.samples.append(s)
        return s

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.server.proc.poll() is not None:
                return
            self.take()

    @property
    def latest(self) -> Sample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None


class ServerDied(RuntimeError):
    pass


@dataclass
class Reading:
    """The server at rest, every client gone."""

    fds: int
    rss_kib: int
    """After malloc_trim(0) in every worker (see TRIM), unless --no-trim."""
    rss_untrimmed_kib: int
    trimmed_workers: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _rss_median(pid: int, n: int = 5) -> int:
    readings = []
    for _ in range(n):
        readings.append(procstat.rss_kib(pid))
        time.sleep(0.1)
    return int(statistics.median(readings))


def settle(
    server: runner.Server, port: int, workers: int, trim: bool, target_fds: int | None = None
) -> Reading:
    """Wait until the server's fd count holds still (and equals ``target_fds`` if given, or
    SETTLE_TIMEOUT passed); then read its RSS, and again after malloc_trim(0)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last, since = -1, time.monotonic()
    while True:
        if server.proc.poll() is not None:
            raise ServerDied(f"the server exited with {server.proc.returncode}")
        fds = fd_count(server.pid)
        now = time.monotonic()
        if fds != last:
            last, since = fds, now
        steady = now - since >= SETTLE_STABLE
        if (steady and (target_fds is None or fds == target_fds)) or now > deadline:
            break
        time.sleep(0.2)
    untrimmed = _rss_median(server.pid)
    if not trim:
        return Reading(fds, untrimmed, untrimmed, 0)
    trimmed = ask_each_worker(port, workers, "POST", "/trim")
    return Reading(fds, _rss_median(server.pid), untrimmed, len(trimmed))


# --- driving the clients -----------------------------------------------------------------------


def drive(
    server: runner.Server,
    port: int,
    requests: int,
    clients: int,
    seed: int,
    progress: Any,
    sampler: Sampler,
    label: str,
    mix: dict[str, int],
) -> Tally:
    """``clients`` processes share ``requests``; wait for all of them, printing progress."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    quotas = [requests // clients + (i < requests % clients) for i in range(clients)]
    for i in range(clients):
        progress[i] = 0
    procs = [
        ctx.Process(
            target=client_process,
            args=(HOST, port, seed * 1000 + i, quotas[i], progress, i, results, mix),
            daemon=True,
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    parts: dict[int, dict[str, Any]] = {}
    t0 = last_print = last_move = time.monotonic()
    last_done = 0
    try:
        while len(parts) < clients:
            try:
                slot, part = results.get(timeout=1.0)
                parts[slot] = part
            except queue.Empty:
                pass
            now = time.monotonic()
            done = sum(progress)
            if done != last_done:
                last_done, last_move = done, now
            if server.proc.poll() is not None:
                raise ServerDied(f"the server exited with {server.proc.returncode} during {label}")
            if now - last_move > STALL_TIMEOUT:
                raise ServerDied(f"no request completed for {STALL_TIMEOUT:g} s during {label}")
            silent = [i for i, p in enumerate(procs) if p.exitcode is not None and i not in parts]
            if silent:
                # exited without a word yet: give its result time to arrive, else it died
                # (killed?) and results.get would wait forever
                try:
                    while True:
                        slot, part = results.get(timeout=2.0)
                        parts[slot] = part
                except queue.Empty:
                    pass
                for i in silent:
                    if i not in parts:
                        parts[i] = {"crash": f"client {i} exited with {procs[i].exitcode}"}
            if now - last_print >= 10:
                s = sampler.latest
                mem = f" rss={s.rss_kib / 1024:.1f} MiB fds={s.fds}" if s else ""
                print(
                    f"soak: {label}: {done:,}/{requests:,} requests, "
                    f"{done / (now - t0):,.0f} req/s{mem}",
                    flush=True,
                )
                last_print = now
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join()
    crashes = [p["crash"] for p in parts.values() if "crash" in p]
    tally = Tally.merge([p for p in parts.values() if "crash" not in p])
    for c in crashes:
        tally.failures["client crashed"] += 1
        tally.examples.setdefault("client crashed", c)
    return tally


# --- after the run -----------------------------------------------------------------------------


def ask_each_worker(port: int, workers: int, method: str, path: str) -> dict[int, dict[str, Any]]:
    """The JSON answer (with a "pid") of each worker to ``method path``, a fresh connection per
    try: which worker accepts is the kernel's choice, so with several it may take a few."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(1 if workers == 1 else 40 * workers):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.request(method, path, headers={"Connection": "close"})
            answer = json.loads(conn.getresponse().read())
            seen[answer["pid"]] = answer
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        if len(seen) == workers:
            break
    return seen


def log_records(text: str) -> list[tuple[str, str, str]]:
    """The server log as (level, first line, the whole record with its traceback)."""
    records: list[tuple[str, str, str]] = []
    lines: list[str] = []
    for line in text.splitlines():
        m = LOG_RECORD_RE.match(line)
        if m:
            lines = [line]
            records.append((m.group(1), m.group(2), ""))
        elif records:
            lines.append(line)
        if records:
            level, first, _ = records[-1]
            records[-1] = (level, first, "\n".join(lines))
    return records


def log_problems(text: str) -> tuple[Counter, list[str]]:
    """(expected error records by kind, unexpected WARNING/ERROR/CRITICAL records and panics)."""
    expected: Counter = Counter()
    other = [line for line in text.splitlines() if "panicked" in line]
    for level, first, whole in log_records(text):
        if level not in ("WARNING", "ERROR", "CRITICAL"):
            continue
        last = whole.rstrip().rpartition("\n")[2]
        if APP_ERROR_RE.match(first) and last.startswith("app.AppError: soak: failing on purpose"):
            expected["app_error"] += 1
        else:
            other.append(whole[:2000])
    return expected, other


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def summary_lines(res: dict[str, Any]) -> list[str]:
    r = res
    lines = [
        f"soak: {r['requests']:,} requests in {r['seconds']:.0f} s ({r['rps']:,.0f} req/s), "
        f"{r['clients']} client processes, ferrule --threads {r['threads']} "
        f"--workers {r['workers']}; "
        + ", ".join(f"{k}={v or 'unset'}" for k, v in r["malloc"].items()),
        "soak: answers as expected, by op: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(r["ok"].items())),
        f"soak: expected failures (500s, cut streams, hang-ups): {r['expected_failures']:,}",
    ]
    if r["failures"]:
        lines.append(f"soak: UNEXPECTED failures: {sum(r['failures'].values()):,}")
        for kind, n in sorted(r["failures"].items(), key=lambda kv: -kv[1]):
            lines.append(f"soak:   {n:>8,}  {kind}  (e.g. {r['examples'].get(kind, '')})")
    else:
        lines.append("soak: unexpected failures: 0")
    m = r["memory"]
    at_rest = "at rest, after malloc_trim(0)" if m["trim"] else "at rest"
    lines += [
        f"soak: RSS {at_rest}: at start {mib(m['rss_start_kib'])}, after the warm-up "
        f"({r['warmup_requests']:,} requests) {mib(m['rss_warmup_kib'])}, at the end "
        f"{mib(m['rss_end_kib'])}: {m['rss_growth'] * 100:+.2f} % "
        f"({m['rss_growth_bytes_per_request']:+.2f} bytes per measured request)",
        f"soak: RSS before malloc_trim: after the warm-up "
        f"{mib(m['warmup']['rss_untrimmed_kib'])}, at the end "
        f"{mib(m['end']['rss_untrimmed_kib'])} ({m['rss_untrimmed_growth'] * 100:+.2f} %); "
        f"max while loaded {mib(m['rss_max_kib'])}",
        f"soak: open fds at start {m['fds_start']}, after warm-up {m['fds_warmup']}, at the end "
        f"{m['fds_end']}, max while loaded {m['fds_max']}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    total = args.requests or (SHORT_REQUESTS if args.short else DEFAULT_REQUESTS)
    warm_share = args.warmup or (SHORT_WARMUP if args.short else WARMUP)
    warm_n = max(int(total * warm_share), args.clients * PIPELINE_DEPTH)
    rest_n = total - warm_n
    mix = args.ops or MIX
    if rest_n < args.clients * PIPELINE_DEPTH:
        sys.exit("soak: too few requests for a warm-up and a measured phase")

    tmp = Path(tempfile.mkdtemp(prefix="ferrule-soak-"))
    log = args.log or tmp / "server.log"
    argv_server = [
        args.python,
        "-m",
        "ferrule",
        "--bind",
        f"{HOST}:0",
        "--threads",
        str(args.threads),
        "--pythonpath",
        str(BENCH / "apps"),
        "app:app",
    ]
    if args.workers > 1:
        argv_server[-1:-1] = ["--workers", str(args.workers)]
    launch = Launch("ferrule", argv_server, None, args.threads, args.workers, cwd=HERE)

    os.environ["SOAK_LEAK_BYTES"] = str(args.leak_bytes)
    os.environ["SOAK_LEAK_FD_EVERY"] = str(args.leak_fd_every)
    # the server inherits os.environ (and the clients, who do not care)
    for name, value in (
        ("MALLOC_ARENA_MAX", args.malloc_arena_max),
        ("MALLOC_MMAP_THRESHOLD_", args.malloc_mmap_threshold),
    ):
        if value > 0:
            os.environ[name] = str(value)
    tunables = {
        name: os.environ.get(name) for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")
    }
    shown = ", ".join(f"{k}={v or 'unset'}" for k, v in tunables.items())
    print(
        f"soak: {' '.join(argv_server)}  (cwd {HERE}, {shown})",
        flush=True,
    )
    problems: list[str] = []
    machine_info = machine.describe((args.python,), None)  # before: the build under test
    try:
        server = runner.Server(launch, None, log)
    except OSError as exc:
        sys.exit(f"soak: cannot start the server: {exc}")
    progress = multiprocessing.get_context("spawn").Array("q", args.clients, lock=False)
    sampler = Sampler(server, args.interval, progress)
    res: dict[str, Any] = {}
    phase = "start-up"
    try:
        port = server.wait_ready("/")
        start = settle(server, port, args.workers, args.trim)
        pids_start = sorted(procstat.tree(server.pid))
        sampler.start()
        t0 = time.monotonic()
        phase = "the warm-up"
        warm = drive(
            server, port, warm_n, args.clients, args.seed, progress, sampler, "warm-up", mix
        )
        t_warm = time.monotonic()
        base = settle(server, port, args.workers, args.trim)
        pids_warm = sorted(procstat.tree(server.pid))
        print(
            f"soak: baseline after {warm.requests:,} requests: RSS {mib(base.rss_kib)} "
            f"({mib(base.rss_untrimmed_kib)} before malloc_trim), {base.fds} fds",
            flush=True,
        )
        t1 = time.monotonic()
        phase = "the measured phase"
        rest = drive(
            server, port, rest_n, args.clients, args.seed + 1, progress, sampler, "measured", mix
        )
        t2 = time.monotonic()
        phase = "the final reading"
        end = settle(server, port, args.workers, args.trim, base.fds)
        pids_end = sorted(procstat.tree(server.pid))
        stats = ask_each_worker(port, args.workers, "GET", "/stats")
    except (ServerDied, runner.ServerFailed) as exc:
        problems.append(
            f"the server died during {phase}, {sum(progress):,} requests into it: {exc}. "
            f"The end of its log: {server.log_tail(10)}"
        )
        sampler.stop()
        server.stop()
        return report(problems, res, args, log, tmp)
    sampler.stop()
    server.stop()
    if server.proc.returncode not in (0, None):
        problems.append(f"the server exited with {server.proc.returncode} on SIGTERM")

    tally = Tally.merge([warm.as_dict(), rest.as_dict()])
    loaded = [s for s in sampler.samples if s.t >= t1 - sampler.t0]
    rss_warm, rss_end = base.rss_kib, end.rss_kib
    growth = (rss_end - rss_warm) / rss_warm
    untrimmed_growth = (end.rss_untrimmed_kib - base.rss_untrimmed_kib) / base.rss_untrimmed_kib
    seconds = (t_warm - t0) + (t2 - t1)  # under load: the settling pause left out
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine_info,
        "command": " ".join(argv_server),
        "malloc": tunables,
        "workers": args.workers,
        "threads": args.threads,
        "clients": args.clients,
        "seed": args.seed,
        "requests": tally.requests,
        "warmup_requests": warm.requests,
        "measured_requests": rest.requests,
        "seconds": seconds,
        "seconds_with_pauses": t2 - t0,
        "rps": tally.requests / seconds,
        "rps_measured": rest.requests / (t2 - t1),
        "mix": mix,
        "ok": dict(tally.ok),
        "expected_failures": sum(tally.ok[k] for k in EXPECTED_FAILURES),
        "failures": dict(tally.failures),
        "examples": tally.examples,
        "reconnects": tally.reconnects,
        "memory": {
            "trim": args.trim,
            "start": start.as_dict(),
            "warmup": base.as_dict(),
            "end": end.as_dict(),
            "rss_start_kib": start.rss_kib,
            "rss_warmup_kib": rss_warm,
            "rss_end_kib": rss_end,
            "rss_untrimmed_growth": untrimmed_growth,
            "rss_max_kib": max((s.rss_kib for s in sampler.samples), default=rss_end),
            "rss_max_measured_kib": max((s.rss_kib for s in loaded), default=rss_end),
            "rss_growth": growth,
            "rss_growth_bytes_per_request": (rss_end - rss_warm) * 1024 / max(rest.requests, 1),
            "rss_tolerance": args.rss_tolerance,
            "fds_start": start.fds,
            "fds_warmup": base.fds,
            "fds_end": end.fds,
            "fds_max": max((s.fds for s in sampler.samples), default=end.fds),
            "pids": {"start": pids_start, "warmup": pids_warm, "end": pids_end},
        },
        "app_stats": {str(k): v for k, v in stats.items()},
        "samples": [s.as_dict() for s in sampler.samples],
    }

    # the criteria
    if tally.failures:
        problems.append(f"{sum(tally.failures.values()):,} unexpected failures (listed above)")
    if tally.requests != total:
        problems.append(f"{tally.requests:,} requests sent, {total:,} wanted")
    if growth > args.rss_tolerance:
        problems.append(
            f"RSS grew {growth * 100:.2f} % after the warm-up ({mib(rss_warm)} -> "
            f"{mib(rss_end)}), more than {args.rss_tolerance * 100:g} %"
        )
    if end.fds != base.fds:
        problems.append(
            f"open fds: {base.fds} after the warm-up, {end.fds} at the end "
            f"({SETTLE_TIMEOUT:g} s after the clients hung up)"
        )
    if args.trim and min(base.trimmed_workers, end.trimmed_workers) < args.workers:
        problems.append(
            f"malloc_trim reached {base.trimmed_workers} then {end.trimmed_workers} of "
            f"{args.workers} workers: the RSS readings are not comparable"
        )
    changed = sorted({tuple(s.pids) for s in sampler.samples} | {tuple(pids_end)})
    if pids_end != pids_warm or pids_warm != pids_start or len(changed) > 1:
        problems.append(
            f"the server's processes changed (a worker died or was replaced): "
            f"start {pids_start}, after warm-up {pids_warm}, end {pids_end}"
        )
    if len(stats) < args.workers:
        problems.append(f"/stats answered from {len(stats)} of {args.workers} workers")
    for pid, st in stats.items():
        if st["streams_opened"] != st["streams_closed"]:
            problems.append(
                f"worker {pid}: {st['streams_opened'] - st['streams_closed']} response "
                f"iterables never closed ({st['streams_opened']} opened)"
            )
    log_text = log.read_text("utf-8", "replace") if log.exists() else ""
    expected_errors, other = log_problems(log_text)
    res["log"] = {"expected_errors": dict(expected_errors), "unexpected": other[:20]}
    raised = tally.ok["error"] + tally.ok["stream_error"]
    if other:
        problems.append(f"{len(other)} unexpected log records, the first:\n{other[0]}")
    if expected_errors["app_error"] < raised:
        problems.append(f"{raised:,} app errors raised, {expected_errors['app_error']:,} logged")
    if expected_errors["reset_mid_body"] > tally.ok["drop_body"]:
        problems.append(
            f"{expected_errors['reset_mid_body']:,} uploads reset mid-body in the log, "
            f"more than the {tally.ok['drop_body']:,} the clients cut"
        )
    return report(problems, res, args, log, tmp)


def report(
    problems: list[str], res: dict[str, Any], args: argparse.Namespace, log: Path, tmp: Path
) -> int:
    """Print the summary and the verdict; the server log is kept when the run failed."""
    if res:
        print("\n".join(summary_lines(res)))
        res["problems"] = problems
        if args.json:
            args.json.write_text(json.dumps(res, indent=1) + "\n")
            print(f"soak: summary in {args.json}")
    for p in problems:
        print(f"soak: FAILED: {p}")
    if problems:
        print(f"soak: the server's log is in {log}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        print("soak: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
