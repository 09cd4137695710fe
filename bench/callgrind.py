#!/usr/bin/env python3
"""Instructions per request of ferrule, counted by callgrind: repeatable whatever else the
machine is doing, unlike req/s.

    python bench/callgrind.py                    # 20,000 hello requests, prints Ir per request
    python bench/callgrind.py --write-docs --note "after: environ copy"

ferrule runs under ``valgrind --tool=callgrind`` with ``--threads 1``. One client sends the
requests one after another on one keep-alive connection. After a warm-up the counters are
zeroed (``callgrind_control --zero``), and dumped after the measured requests
(``callgrind_control --dump``), so start-up and shut-down are not counted. The count covers the
whole server process, every thread (the watcher thread too).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LISTEN_RE = re.compile(r"Listening at: http://[^\s]*:(\d+)")
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def _answer(sock: socket.socket, pending: bytearray) -> None:
    """Read one response (with a Content-Length) from ``sock``; leftovers stay in ``pending``."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        pending += chunk
    head, _, _ = bytes(pending).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected answer: {head[:80]!r}")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    end = len(head) + 4 + int(m.group(1) if m else 0)
    while len(pending) < end:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        pending += chunk
    del pending[:end]


def requests(sock: socket.socket, count: int) -> None:
    pending = bytearray()
    for _ in range(count):
        sock.sendall(REQUEST)
        _answer(sock, pending)


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def _newest_dump(outdir: Path, pid: int) -> Path:
    dumps = [p for p in glob.glob(str(outdir / f"callgrind.out.{pid}*")) if not p.endswith(".log")]
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump in {outdir}")
    return Path(max(dumps, key=os.path.getmtime))


def _total_ir(dump: Path) -> int:
    """Ir of a dump: its ``totals:`` (or ``summary:``) line."""
    text = dump.read_text("latin-1")
    m = re.search(r"^(?:totals|summary):\s*(\d+)", text, re.M)
    if not m:
        raise RuntimeError("no totals line in the callgrind dump")
    return int(m.group(1))


def _wait_port(log: Path, proc: subprocess.Popen, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ferrule exited under valgrind: {log.read_text()[-800:]}")
        m = LISTEN_RE.search(log.read_text("utf-8", "replace"))
        if m:
            return int(m.group(1))
        time.sleep(0.1)  # poll interval: valgrind makes start-up take seconds
    raise RuntimeError(f"ferrule did not listen within {timeout:g} s under valgrind")


def measure(python: str, count: int, warmup: int, threads: int, keep: Path | None = None) -> dict:
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise RuntimeError("valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="ferrule-callgrind-") as tmp:
        outdir, log = Path(tmp), Path(tmp) / "server.log"
        argv = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={outdir}/callgrind.out.%p",
            python,
            "-m",
            "ferrule",
            "--bind",
            "127.0.0.1:0",
            "--threads",
            str(threads),
            "--keep-alive",
            "600",
            "--chdir",
            str(HERE / "apps"),
            "hello:app",
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )
        try:
            port = _wait_port(log, proc, 300)
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                requests(sock, warmup)
                _control("--zero", str(proc.pid))
                requests(sock, count)
                _control("--dump", str(proc.pid))
            dump = _newest_dump(outdir, proc.pid)
            ir = _total_ir(dump)
            if keep is not None:
                shutil.copy(dump, keep)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return {"requests": count, "ir": ir, "ir_per_request": ir / count}


def add_row(md: Path, row: str) -> None:
    """Append ``row`` to the callgrind table of docs/benchmarks.md (made if missing)."""
    text = md.read_text() if md.exists() else ""
    if report.CALLGRIND_END not in text:
        text = (
            text.rstrip("\n")
            + "\n\n"
            + "\n".join(
                [
                    report.CALLGRIND_INTRO,
                    "",
                    report.CALLGRIND_BEGIN,
                    report.CALLGRIND_EMPTY,
                    report.CALLGRIND_END,
                    "",
                ]
            )
        )
    before, _, after = text.partition(report.CALLGRIND_END)
    md.write_text(before.rstrip("\n") + "\n" + row + "\n" + report.CALLGRIND_END + after)


def main() -> int:
    p = argparse.ArgumentParser(
        description="Count ferrule's instructions per hello request with callgrind.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--requests", type=int, default=20000, help="measured requests")
    p.add_argument("--warmup", type=int, default=1000, help="requests before the counters start")
    p.add_argument("--threads", type=int, default=1, help="ferrule --threads")
    p.add_argument(
        "--python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="the Python that has ferrule installed",
    )
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="add the result as a row of the table in docs/benchmarks.md",
    )
    p.add_argument("--note", default="", help="the row's note column")
    p.add_argument(
        "--keep",
        type=Path,
        metavar="FILE",
        help="copy the measured dump here, for callgrind_annotate",
    )
    p.add_argument("--docs-dir", type=Path, default=ROOT / "docs")
    args = p.parse_args()
    try:
        res = measure(args.python, args.requests, args.warmup, args.threads, args.keep)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"callgrind: {exc}", file=sys.stderr)
        return 1
    print(
        f"{res['ir_per_request']:.0f} instructions per request "
        f"({res['ir']:,} over {res['requests']:,} requests, --threads {args.threads})"
    )
    if args.write_docs:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        row = (
            f"| {time.strftime('%Y-%m-%d')} | `{commit}` | {res['requests']:,} "
            f"| {res['ir_per_request']:,.0f} | {args.note or '–'} |"
        )
        add_row(args.docs_dir / "benchmarks.md", row)
        print(f"callgrind: added a row to {args.docs_dir / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
