#!/usr/bin/env python3
"""The in-process floor: a workload's app called in a plain Python loop, with no server around it.

    python bench/floor.py --workload flask --calls 20000 --cpu 1
    python bench/floor.py --workload hello --json      # one JSON object, for bench/run.py

The performance issue sets the flask target against it: ferrule's CPU per request at most
1.11 x this floor. One environ is built the way ferrule builds it for the workload's request
(wrk's ``GET /json`` with only a Host header); each call copies it (a dict copy, as a server
does per request), calls the app with a minimal ``start_response``, joins the body and calls
``close()`` if the body has one. After a warm-up (a tenth of --calls), the process's CPU time
(``time.process_time``) is taken over --calls calls, --rounds times; the median round is the
floor, in µs per call. The app is the one the servers serve (bench/apps), imported into this
interpreter.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from servers import APPS, HOST
from workloads import WORKLOADS, Workload

PORT = 18181
"""SERVER_PORT and the Host header's port: any port, the apps do not look at it."""
REMOTE_PORT = "40000"

StartResponse = Callable[..., Callable[[bytes], None]]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Requests without a body (wsgi.input stays empty), apps that do not sleep (10 ms a call).
MEASURABLE = [n for n, w in WORKLOADS.items() if not w.body_bytes and not w.sleepy]


@dataclass(frozen=True)
class Floor:
    workload: str
    us_per_call: float
    """The median round, in CPU µs per call."""
    rounds_us: list[float]
    calls: int
    """Calls per round."""
    cpu: int | None
    """The CPU this process was pinned to, None if it was not."""
    python: str
    executable: str


def load_app(workload: Workload) -> App:
    """The ``app`` of the workload's module in bench/apps, as the servers import it."""
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    return importlib.import_module(workload.app).app


def environ_for(workload: Workload) -> dict[str, Any]:
    """The environ ferrule builds for the workload's request, as wrk sends it."""
    path, _, query = workload.path.partition("?")
    return {
        "SERVER_SOFTWARE": "ferrule",
        "SCRIPT_NAME": "",
        "SERVER_NAME": HOST,
        "SERVER_PORT": str(PORT),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "REQUEST_METHOD": workload.method,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": HOST,
        "REMOTE_PORT": REMOTE_PORT,
        "REQUEST_URI": workload.path,
        "RAW_URI": workload.path,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(),
        "HTTP_HOST": f"{HOST}:{PORT}",
    }


def _write(data: bytes) -> None:
    """The write callable of PEP 3333; the apps measured here never call it."""


def _start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], None]:
    return _write


def check(app: App, environ: dict[str, Any]) -> str:
    """One call that records the status: the floor of a 404 would measure the wrong thing."""
    seen: list[str] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        seen.append(status)
        return _write

    body = app(dict(environ), start_response)
    b"".join(body)
    if hasattr(body, "close"):
        body.close()
    return seen[-1] if seen else "no start_response call"


def cpu_seconds(app: App, environ: dict[str, Any], calls: int) -> float:
    """The process's CPU time for ``calls`` calls of ``app``, each on a copy of ``environ``."""
    start_response, join = _start_response, b"".join
    start = time.process_time()
    for _ in range(calls):
        body = app(environ.copy(), start_response)
        join(body)
        if hasattr(body, "close"):
            body.close()
    return time.process_time() - start


def pin(cpu: int | None) -> int | None:
    """Pin this process to ``cpu`` if asked and possible; the CPU it is pinned to, or None."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        print(f"floor: not pinned to CPU {cpu}: {exc}", file=sys.stderr)
        return None
    return cpu


def measure(workload: Workload, calls: int, rounds: int, cpu: int | None = None) -> Floor:
    pinned = pin(cpu)
    app = load_app(workload)
    environ = environ_for(workload)
    status = check(app, environ)
    if not status.startswith("2"):
        raise RuntimeError(f"{workload.method} {workload.path} answered {status!r}, not 2xx")
    cpu_seconds(app, environ, max(calls // 10, 1))  # warm-up
    rounds_us = [cpu_seconds(app, environ, calls) * 1e6 / calls for _ in range(rounds)]
    return Floor(
        workload=workload.name,
        us_per_call=statistics.median(rounds_us),
        rounds_us=rounds_us,
        calls=calls,
        cpu=pinned,
        python=platform.python_version(),
        executable=sys.executable,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--workload", choices=MEASURABLE, default="flask")
    p.add_argument("--calls", type=int, default=20000, help="calls per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds; the median one is kept")
    p.add_argument("--cpu", type=int, default=None, help="CPU to pin this process to")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args(argv)
    if args.calls < 1 or args.rounds < 1:
        p.error("--calls and --rounds must be at least 1")
    try:
        floor = measure(WORKLOADS[args.workload], args.calls, args.rounds, args.cpu)
    except Exception as exc:  # the app's own failure, reported in one line
        print(f"floor: {args.workload}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(floor)))
        return 0
    where = f"CPU {floor.cpu}" if floor.cpu is not None else "not pinned"
    print(
        f"{floor.workload}: in-process floor {floor.us_per_call:.2f} µs per call (median of "
        f"{args.rounds} rounds of {floor.calls} calls: "
        f"{' '.join(f'{r:.2f}' for r in floor.rounds_us)}; {where}; Python {floor.python})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
