"""Load generators: wrk (one thread, pinned, keep-alive) and a small Python fallback.

The fallback exists so that the smoke run (``run.py --smoke``, part of ``make test``) needs
nothing but the project's venv: it checks that the suite works, its numbers are not comparable
with wrk's.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
UPLOAD_LUA = HERE / "upload.lua"
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    non_2xx: int
    socket_errors: int

    def as_dict(self) -> dict:
        return asdict(self)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def taskset_prefix(cpus: list[int] | None) -> list[str]:
    """``taskset -c CPUS`` when pinning is asked for and taskset exists, else nothing."""
    if not cpus or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", ",".join(map(str, cpus))]


def _ms(text: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS_MS[m.group(2)] if m else None


def parse_wrk(out: str) -> LoadResult:
    """Read wrk's --latency report."""

    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, out, re.MULTILINE)

    done = find(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)")
    rps = find(r"^Requests/sec:\s+([\d.]+)")
    pct = {p: find(rf"^\s+{p}%\s+(\S+)") for p in (50, 90, 99)}
    non2xx = find(r"Non-2xx or 3xx responses:\s+(\d+)")
    sock = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    if not done or not rps:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return LoadResult(
        tool="wrk",
        requests=int(done.group(1)),
        seconds=float(done.group(2)) * _UNITS_MS[done.group(3)] / 1e3,
        rps=float(rps.group(1)),
        p50_ms=_ms(pct[50].group(1)) if pct[50] else None,
        p90_ms=_ms(pct[90].group(1)) if pct[90] else None,
        p99_ms=_ms(pct[99].group(1)) if pct[99] else None,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
    )


def run_wrk(
    url: str,
    seconds: float,
    connections: int,
    cpus: list[int] | None,
    body_bytes: int = 0,
) -> LoadResult:
    """One wrk thread, ``connections`` keep-alive connections, ``seconds`` long."""
    wrk = wrk_path()
    if not wrk:
        raise RuntimeError("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    cmd = [*taskset_prefix(cpus), wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    env = dict(os.environ)
    if body_bytes:
        cmd += ["-s", str(UPLOAD_LUA)]
        env["BENCH_BODY_BYTES"] = str(body_bytes)
    cmd.append(url)
    # wrk stops by itself after -d; the timeout only guards against a wedged wrk
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return parse_wrk(proc.stdout)


# --- the Python fallback -------------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.non_2xx = 0
        self.errors = 0


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one response with a Content-Length; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise ValueError("the Python load generator needs a Content-Length")
    await reader.readexactly(length)
    return status


async def _client(host: str, port: int, request: bytes, deadline: float, stats: _Stats) -> None:
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats.errors += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                writer.write(request)
                status = await asyncio.wait_for(
                    _response(reader), max(deadline - time.monotonic(), 0) + 2
                )
                stats.latencies.append((time.perf_counter() - t0) * 1e3)
                if not 200 <= status < 400:
                    stats.non_2xx += 1
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            stats.errors += 1
        finally:
            writer.close()


def _percentile(sorted_ms: list[float], p: float) -> float | None:
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p / 100))]


def run_python(
    host: str, port: int, path: str, seconds: float, connections: int, body_bytes: int = 0
) -> LoadResult:
    """Keep-alive clients in one asyncio loop in this process, for ``seconds``."""
    method = "POST" if body_bytes else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if body_bytes:
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {body_bytes}\r\n"
    request = head.encode() + b"\r\n" + b"u" * body_bytes
    stats = _Stats()

    async def main() -> float:
        start = time.monotonic()
        deadline = start + seconds
        await asyncio.gather(
            *(_client(host, port, request, deadline, stats) for _ in range(connections))
        )
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    lat = sorted(stats.latencies)
    return LoadResult(
        tool="python",
        requests=len(lat),
        seconds=elapsed,
        rps=len(lat) / elapsed if elapsed else 0.0,
        p50_ms=_percentile(lat, 50),
        p90_ms=_percentile(lat, 90),
        p99_ms=_percentile(lat, 99),
        non_2xx=stats.non_2xx,
        socket_errors=stats.errors,
    )
