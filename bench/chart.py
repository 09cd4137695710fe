"""docs/benchmarks.png from a results file: req/s and CPU µs per request, per server.

Needs matplotlib. run.py calls ``draw`` when this interpreter has it, otherwise it runs this file
with the peers' venv, which has it: ``python bench/chart.py RESULTS.json OUT.png``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def _short(v: float) -> str:
    if not v:
        return ""
    if v >= 10000:
        return f"{v / 1000:.0f}k"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def draw(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    names = [w for w in results["meta"]["workloads"] if any(r["workload"] == w for r in summary)]
    metrics = (
        ("rps", "req/s"),
        ("cpu_us_per_req", "CPU µs/req, log scale, lower is better"),
    )
    cols = max(min(len(names), 3), 1)
    blocks = max(math.ceil(len(names) / cols), 1)
    fig, axes = plt.subplots(
        len(metrics) * blocks,
        cols,
        figsize=(3.6 * cols, 3.4 * len(metrics) * blocks),
        squeeze=False,
    )
    for i, name in enumerate(names):
        rows = [r for r in summary if r["workload"] == name]
        labels = [r["server"] + (f" ×{r['workers']}" if r["workers"] > 1 else "") for r in rows]
        colors = ["tab:orange" if r["server"] == "ferrule" else "tab:blue" for r in rows]
        for row_i, (key, title) in enumerate(metrics):
            ax = axes[(i // cols) * len(metrics) + row_i][i % cols]
            values = [r.get(key) or 0 for r in rows]
            bars = ax.bar(range(len(rows)), values, color=colors)
            ax.bar_label(
                bars, labels=[_short(v) for v in values], fontsize=6, rotation=90, padding=2
            )
            if key == "cpu_us_per_req" and any(values):
                ax.set_yscale("log")  # the slowest peers spend 10-400x more: keep ferrule visible
            ax.margins(y=0.25)
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{name}: {title}", fontsize=8)
    fig.suptitle(f"ferrule and peers, {results['meta']['date']}", fontsize=10)
    for j in range(len(names), blocks * cols):  # empty cells of the last block
        for row_i in range(len(metrics)):
            axes[(j // cols) * len(metrics) + row_i][j % cols].axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/chart.py RESULTS.json OUT.png")
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
