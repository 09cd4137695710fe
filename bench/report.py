"""docs/benchmarks.md from a results file: tables, machine, how to run, the callgrind section.

The page is regenerated whole, except the callgrind table between its two markers, which is
carried over from the existing page (bench/callgrind.py adds rows to it; people add before/after
rows by hand).
"""

from __future__ import annotations

import re
from typing import Any

from results import efficiency
from workloads import WORKLOADS

CALLGRIND_BEGIN = "<!-- callgrind:begin -->"
CALLGRIND_END = "<!-- callgrind:end -->"
FLOOR_TARGETS = {"flask": 1.11}
"""ferrule's CPU µs per request over the in-process floor, at most, as the performance issue
sets it (hello has no such target)."""
CALLGRIND_EMPTY = """| date | ferrule commit | requests | instructions per request | note |
| --- | --- | --- | --- | --- |"""


def _num(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def rps(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1000:.1f}k" if v >= 10000 else f"{v:.0f}"


def ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.2f} ms" if v < 10 else f"{v:.0f} ms"


def pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f} %"


def mib(kib: float | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.0f} MiB"


def _errors(row: dict[str, Any]) -> str:
    parts = []
    if row.get("ok", 0) < row.get("reps", 0):
        parts.append(
            f"{row['reps'] - row['ok']}/{row['reps']} runs failed: "
            + "; ".join(e.replace("|", "/")[:120] for e in row.get("errors", []))
        )
    if row.get("non_2xx"):
        parts.append(f"{row['non_2xx']:.0f} non-2xx")
    if row.get("socket_errors"):
        parts.append(f"{row['socket_errors']:.0f} socket errors")
    return ", ".join(parts) or "–"


def _rows(summary: list[dict], workload: str) -> list[dict]:
    return [r for r in summary if r["workload"] == workload]


def summary_table(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]
    out = [
        "| workload | workers | ferrule req/s | best peer req/s | ferrule CPU µs/req "
        "| most frugal peer (any workers), CPU µs/req | efficiency |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in results["meta"]["workloads"]:
        if name == "idle":
            continue  # its own table says what counts there
        for workers in results["meta"]["workers"]:
            rows = [r for r in _rows(summary, name) if r["workers"] == workers]
            mine = next((r for r in rows if r["server"] == "ferrule"), None)
            peers = [r for r in rows if r["server"] != "ferrule" and r.get("rps") is not None]
            if not mine and not peers:
                continue
            best = max(peers, key=lambda r: r["rps"], default=None)
            eff = efficiency(summary, name, workers)
            out.append(
                f"| {name} | {workers} | {rps(mine.get('rps')) if mine else '–'} | "
                + (f"{rps(best['rps'])} ({best['server']})" if best else "–")
                + f" | {_num(mine.get('cpu_us_per_req') if mine else None, '.2f')} | "
                + (f"{eff['peer_cpu_us_per_req']:.2f} ({eff['peer']})" if eff else "–")
                + f" | {_num(eff['ratio'] if eff else None, '.2f')} |"
            )
    return out


def workload_table(results: dict[str, Any], name: str) -> list[str]:
    out = [
        "| server | req/s | p99 | CPU µs/req | of it in the kernel | CPU cores used "
        "| ctx switches/req | peak RSS | clients left unaccepted | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in _rows(results["summary"], name):
        p99 = r.get("p99_ms") if r.get("requests") else None  # wrk prints 0 for no request
        out.append(
            f"| {r['label']} | {rps(r.get('rps'))} | {ms(p99)} "
            f"| {_num(r.get('cpu_us_per_req'), '.2f')} | {pct(r.get('kernel_share'))} "
            f"| {_num(r.get('cpu_cores'), '.2f')} "
            f"| {_num(r.get('ctx_per_req'), '.3f')} | {mib(r.get('rss_hwm_kib'))} "
            f"| {_num(r.get('backlog_peak'), '.0f')} "
            f"| {_errors(r)} |"
        )
    return out


def idle_table(results: dict[str, Any]) -> list[str]:
    out = [
        "| server | idle connections open | still open after the load | server RSS per idle "
        "connection | req/s without idle | req/s with idle | throughput drop | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in _rows(results["summary"], "idle"):
        drop = r.get("throughput_drop")
        out.append(
            f"| {r['label']} | {_num(r.get('idle_open'), '.0f')} of "
            f"{_num(r.get('idle_wanted'), '.0f')} | {_num(r.get('idle_alive_after'), '.0f')} "
            f"| {_num(r.get('rss_per_idle_kib'), '.2f')} KiB | {rps(r.get('rps_without_idle'))} "
            f"| {rps(r.get('rps'))} | {_num(None if drop is None else drop * 100, '.1f')} % "
            f"| {_errors(r)} |"
        )
    return out


def floor_line(results: dict[str, Any], name: str) -> str | None:
    """The in-process floor of workload ``name`` next to ferrule's (1 worker) CPU µs per
    request; None if the results have no floor for it (files from before bench/floor.py)."""
    floor = (results.get("floor") or {}).get(name)
    if not floor:
        return None
    pinned = f"pinned to CPU {floor['cpu']}" if floor.get("cpu") is not None else "not pinned"
    line = (
        f"In-process floor (`bench/floor.py`: the same app called in a plain Python loop with a "
        f"prebuilt environ, {pinned}, Python {floor['python']}, median of "
        f"{len(floor['rounds_us'])} rounds of {floor['calls']:,} calls): "
        f"**{floor['us_per_call']:.2f} µs** per call."
    )
    mine = next(
        (
            r
            for r in _rows(results["summary"], name)
            if r["server"] == "ferrule" and r["workers"] == 1 and r.get("cpu_us_per_req")
        ),
        None,
    )
    if mine:
        cpu, base = mine["cpu_us_per_req"], floor["us_per_call"]
        line += (
            f" ferrule (1 worker): {cpu:.2f} CPU µs/req, {cpu - base:.2f} µs above it, "
            f"**{cpu / base:.2f} ×** the floor"
        )
        target = FLOOR_TARGETS.get(name)
        line += (
            f"; the issue's target: ≤ {target:.2f} × ({target * base:.2f} µs here)."
            if target
            else "."
        )
    return line


def machine_line(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    mem = f", {m['mem_gib']} GiB" if m.get("mem_gib") else ""
    load = ", ".join(f"{x:.2f}" for x in m.get("loadavg_at_start", []))
    return (
        f"Measured on {meta['date']} on {m['cpu']} ({m['cores']} cores{mem}), Linux "
        f"{m['kernel']} ({m['arch']}), Python {m['python']}; ferrule `{m['ferrule_commit']}` "
        f"(extension built {m.get('ferrule_built') or '?'}); "
        f"{m.get('wrk') or 'no wrk (Python load generator)'}. Load average at the start: {load}."
    )


def method_line(meta: dict[str, Any]) -> str:
    o = meta["options"]
    pin = meta.get("pinning", "")
    return (
        f"{pin} One wrk thread, {o['connections']} keep-alive connections (upload: 16), "
        f"{o['seconds']:g} s per run, median of {o['repetitions']} run(s) per server with the "
        f"servers alternated; ferrule `--threads {o['threads']}` (sleepy: "
        f"`--threads {o['sleepy_threads']}`)."
    )


def _callgrind_block(existing: str | None) -> str:
    if existing:
        m = re.search(
            re.escape(CALLGRIND_BEGIN) + r"\n(.*?)\n?" + re.escape(CALLGRIND_END), existing, re.S
        )
        if m and m.group(1).strip():
            return m.group(1).strip()
    return CALLGRIND_EMPTY


def markdown(
    results: dict[str, Any], source: str, chart: str | None, existing: str | None = None
) -> str:
    meta = results["meta"]
    lines = [
        "# Benchmarks",
        "",
        f"<!-- Generated by `python bench/run.py --write-docs` from {source}. Edit bench/report.py,"
        " not this page; only the callgrind table is kept across regenerations. -->",
        "",
    ]
    if meta.get("note"):
        lines += [f"> **{meta['note']}**", ""]
    lines += [machine_line(meta), "", method_line(meta), ""]
    lines += [
        "Compare ratios within one run, never absolute numbers across runs or machines. Above "
        "~140k req/s one wrk thread is the bottleneck, so **CPU µs per request** (the server's "
        "own CPU time, all its processes and threads, per request answered) is the figure that "
        "still separates servers. **Efficiency** is the most frugal peer's CPU µs per request "
        "(same workload, any worker count) divided by ferrule's: above 1.00, ferrule spends "
        "less.",
        "",
    ]
    if chart:
        lines += [f"![req/s and CPU µs per request, per server and workload]({chart})", ""]
    lines += ["## Summary", "", *summary_table(results), ""]
    for name in meta["workloads"]:
        w = WORKLOADS[name]
        if name == "idle":
            lines += [
                f"## idle — {w.what}",
                "",
                f"{meta['options']['idle_connections']:,} keep-alive connections are opened "
                "(each answered once) and left silent while the active clients run again. "
                "Server RSS per idle connection is (RSS with them open − RSS before) ÷ "
                "connections open. The drop compares the active clients' req/s with and without "
                "them. Goals of issue 5: ≤ 1 KiB per idle connection, drop ≤ 10 %. Servers with "
                "a keep-alive timeout get 600 s here (ferrule `--keep-alive`, gunicorn "
                "`--keep-alive`, waitress `--channel-timeout`). A negative drop is noise (the run "
                "next to the idle connections happened to go faster).",
                "",
                *idle_table(results),
                "",
                "The active run next to the idle connections:",
                "",
                *workload_table(results, name),
                "",
            ]
            continue
        lines += [f"## {name} — {w.what} (`{w.method} {w.path}`)", ""]
        lines += [*workload_table(results, name), ""]
        floor = floor_line(results, name)
        if floor:
            lines += [floor, ""]
    versions = meta.get("peer_versions") or {}
    if versions:
        lines += [
            "Peer versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".",
            "",
        ]
    lines += [
        HOW_TO_RUN,
        "",
        CALLGRIND_INTRO,
        "",
        CALLGRIND_BEGIN,
        _callgrind_block(existing),
        CALLGRIND_END,
        "",
    ]
    return "\n".join(lines)


HOW_TO_RUN = """## How to run

```sh
make bench                        # = .venv/bin/python bench/run.py --write-docs
python bench/run.py --workloads hello,flask --servers ferrule,bjoern --seconds 5 --repetitions 3
python bench/run.py --workers 1,2 # multi-process servers with 1, then 2 workers
python bench/run.py --smoke       # ferrule, hello, 1 s: does the suite work? (make bench-smoke)
python bench/run.py --from-results bench/results/FILE.json --write-docs   # redo this page
```

`run.py` installs the peers (bjoern, fastwsgi, granian, uwsgi, pyruvate, waitress, gunicorn,
Flask, matplotlib) into its own venv, `bench/.venv-peers`, with pip. It needs `wrk` (Debian:
`apt-get install wrk`), and bjoern needs `libev-dev`; it never runs apt-get itself. Every
number of every run goes to `bench/results/<timestamp>.json`; `--write-docs` rewrites this page
and `docs/benchmarks.png`. `python bench/run.py --help` lists every option.

How it measures: each server is started fresh for each run, pinned with `taskset` to CPU 1
(wrk and the suite itself to CPU 0), and polled until it answers. CPU time is `utime + stime`
from `/proc/PID/stat` of the server's whole process tree, context switches the sum of
`voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` over every thread of the tree, both
taken just before and just after wrk; peak RSS is the sum of the tree's `VmHWM`. With 2 workers
on a 2-core machine the server gets both CPUs and shares CPU 0 with wrk. The in-process floor
under hello and flask is `python bench/floor.py --workload flask --cpu 1`: the app alone, called
in a plain Python loop on a copy of a prebuilt environ (body joined, `close()` called), CPU µs
per call, median of 5 rounds of 20,000 calls; `run.py` measures it once, with ferrule's Python,
pinned to the server's CPU. The socket floor of hello is `bench/floor_server.rs` (`cargo build
--release --example floor_server`): an epoll loop in Rust with no Python that parses each request
and sends ferrule's hello bytes, run by `peers.sh` as an extra server (`EXTRA_NAME`/`EXTRA_CMD`;
its header says how). No test asserts a speed: the smoke run in `make test` only checks
that the suite still works."""

CALLGRIND_INTRO = """## Instructions per request (callgrind)

Wall-clock numbers move with whatever else the machine does; instruction counts do not.
`python bench/callgrind.py` runs ferrule (`--threads 1`) under `valgrind --tool=callgrind`,
sends a fixed number of hello requests one after another on one keep-alive connection, zeroes
the counters after a warm-up and dumps them after the measured requests, and prints the
instructions per request (the whole server process, every thread). Two runs of the same build
differ by about 2 % (the watcher thread's sampling depends on time, which valgrind slows down).
`--write-docs` adds its row below; add the before/after rows of a change by hand."""
