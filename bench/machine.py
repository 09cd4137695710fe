"""The machine and software a run was measured on, for the results file and the docs."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


_BUILT = """
import os, time
try:
    import ferrule._ferrule as m
    print(time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(m.__file__))))
except Exception:
    pass
"""
"""When the installed extension was built: the working tree may have changed since."""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _output(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout + proc.stderr).strip()


def describe(ferrule: tuple[str, ...], wrk: str | None) -> dict:
    """CPU model, cores, memory, kernel, load, Python, ferrule's commit, wrk's version."""
    ferrule_python = Path(ferrule[0]).parent / "python"
    py = str(ferrule_python) if ferrule_python.exists() else "python3"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "mem_gib": _mem_gib(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "loadavg_at_start": list(os.getloadavg()),
        "python": _output([py, "-c", "import platform; print(platform.python_version())"]),
        "ferrule_commit": _output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "ferrule_built": _output([py, "-c", _BUILT]),
        "wrk": (_output([wrk, "-v"]).splitlines() or [""])[0].split(" Copyright")[0]
        if wrk
        else None,
    }
