"""The results file: every run's numbers, and the median per server, workload and worker count.

Layout of ``bench/results/<timestamp>.json``::

    {"meta": {...machine, options, versions...},
     "runs": [{"workload", "server", "workers", "rep", "label", ...numbers or "error"}],
     "summary": [{"workload", "server", "workers", "label", "reps", "ok", ...medians}],
     "efficiency": [{"workload", "workers", "ratio", "ferrule", "peer", ...}],
     "floor": {"flask": {"us_per_call", "rounds_us", "calls", "cpu", "python", ...}}}

``floor`` (bench/floor.py, the app alone in a Python loop) is absent from smoke runs and from
files written before it existed.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

KEY = ("workload", "server", "workers")
NOT_MEDIANED = {"workload", "server", "workers", "rep", "label", "threads", "tool", "error"}


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workload, server, workers): the median of every number over its runs."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in KEY), []).append(run)
    rows = []
    for key, group in groups.items():
        ok = [r for r in group if "error" not in r]
        row: dict[str, Any] = dict(zip(KEY, key))
        row.update(label=group[0]["label"], threads=group[0].get("threads"))
        row.update(reps=len(group), ok=len(ok))
        if ok:
            row["tool"] = ok[0].get("tool")
        errors = sorted({r["error"] for r in group if "error" in r})
        if errors:
            row["errors"] = errors
        for name in sorted({k for r in ok for k in r} - NOT_MEDIANED):
            values = [r[name] for r in ok if isinstance(r.get(name), (int, float))]
            row[name] = statistics.median(values) if values else None
        rows.append(row)
    return rows


def efficiency(summary: list[dict[str, Any]], workload: str, workers: int) -> dict | None:
    """The most frugal peer's CPU µs per request (in the same workload, whatever the peer's
    worker count) over ferrule's at ``workers``, as the performance issue defines it: above
    1.00, ferrule spends less; the hello target is 1.15."""
    rows = [r for r in summary if r["workload"] == workload]
    mine = next((r for r in rows if r["server"] == "ferrule" and r["workers"] == workers), None)
    peers = [r for r in rows if r["server"] != "ferrule" and r.get("cpu_us_per_req")]
    if not mine or not mine.get("cpu_us_per_req") or not peers:
        return None
    best = min(peers, key=lambda r: r["cpu_us_per_req"])
    return {
        "ratio": best["cpu_us_per_req"] / mine["cpu_us_per_req"],
        "ferrule": mine["cpu_us_per_req"],
        "peer": best["server"] + (f" ×{best['workers']}" if best["workers"] > 1 else ""),
        "peer_cpu_us_per_req": best["cpu_us_per_req"],
    }


def efficiencies(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``efficiency`` for every workload and worker count that has a ferrule row."""
    out = []
    for row in summary:
        if row["server"] == "ferrule":
            eff = efficiency(summary, row["workload"], row["workers"])
            if eff:
                out.append({"workload": row["workload"], "workers": row["workers"], **eff})
    return out


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
