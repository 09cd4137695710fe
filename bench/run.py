#!/usr/bin/env python3
"""ferrule's benchmark suite: every workload against ferrule and its peers, in one run.

    python bench/run.py                 # everything; numbers in bench/results/<timestamp>.json
    python bench/run.py --write-docs    # and rewrite docs/benchmarks.md and docs/benchmarks.png
    python bench/run.py --smoke         # ferrule, hello, 1 s: checks the suite works

Each server is started fresh per run and pinned to CPU 1; wrk (one thread) and this script run
on CPU 0. See docs/benchmarks.md ("How to run") for what is measured and how.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import loadgen
import machine
import peers
import report
import results
import runner
import servers
from idle import raise_fd_limit
from workloads import WORKLOADS, parse_list

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLOOR_WORKLOADS = ("hello", "flask")
"""Workloads whose in-process floor (bench/floor.py) is measured next to the servers."""
FLOOR_CALLS = 20000
FLOOR_TIMEOUT = 600


def _int_list(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _server_list(text: str) -> list[str]:
    if text == "all":
        return list(servers.SERVERS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        if n not in servers.SERVERS:
            raise argparse.ArgumentTypeError(
                f"unknown server {n!r}; known: all, {', '.join(servers.SERVERS)}"
            )
    return names


def _workload_list(text: str) -> list[str]:
    try:
        return [w.name for w in parse_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--workloads",
        type=_workload_list,
        default="all",
        help=f"comma-separated, or all: {', '.join(WORKLOADS)}",
    )
    p.add_argument(
        "--servers",
        type=_server_list,
        default="all",
        help=f"comma-separated, or all: {', '.join(servers.SERVERS)}",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    p.add_argument(
        "--connections",
        type=int,
        default=50,
        help="keep-alive connections of the load generator (upload uses 16)",
    )
    p.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="runs per server and workload, servers alternated; the median is kept",
    )
    p.add_argument(
        "--ferrule",
        default=str(ROOT / ".venv" / "bin" / "ferrule"),
        help="command starting ferrule (split on spaces)",
    )
    p.add_argument("--threads", type=int, default=8, help="ferrule --threads")
    p.add_argument(
        "--sleepy-threads", type=int, default=50, help="ferrule --threads for the sleepy workload"
    )
    p.add_argument(
        "--workers",
        type=_int_list,
        default="1,2",
        help="worker processes to compare, e.g. 1,2 (servers that have only one "
        "process run at 1 only)",
    )
    p.add_argument(
        "--idle-connections",
        type=int,
        default=10000,
        help="idle keep-alive connections of the idle workload",
    )
    p.add_argument(
        "--port",
        type=int,
        default=18181,
        help="port for the peers (ferrule picks a free one and reports it)",
    )
    p.add_argument(
        "--client-cpus", type=_int_list, default="0", help="CPUs for wrk and this script"
    )
    p.add_argument(
        "--server-cpus",
        type=_int_list,
        default=None,
        help="CPUs for the server (default: as many CPUs besides the client's as "
        "workers, all CPUs if there are not enough)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin anything to CPUs")
    p.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk, or the Python fallback in --smoke when wrk is missing",
    )
    p.add_argument(
        "--output-dir", type=Path, default=HERE / "results", help="where <timestamp>.json goes"
    )
    p.add_argument(
        "--peers-venv",
        type=Path,
        default=HERE / ".venv-peers",
        help="venv holding the peers (created and filled with pip if needed)",
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="use the peers' venv as it is; peers missing from it are skipped",
    )
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="rewrite docs/benchmarks.md and docs/benchmarks.png",
    )
    p.add_argument("--docs-dir", type=Path, default=ROOT / "docs")
    p.add_argument(
        "--note", default="", help="a line shown in bold at the top of docs/benchmarks.md"
    )
    p.add_argument(
        "--from-results",
        type=Path,
        metavar="FILE",
        help="measure nothing: print (and with --write-docs, publish) FILE",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="ferrule only, hello only, 1 s, results in a temporary directory; "
        "fails if the suite cannot measure (never on speed)",
    )
    return p


# --- setup -----------------------------------------------------------------------------------


def _pinning(args: argparse.Namespace) -> tuple[list[int] | None, Any, str]:
    """(client CPUs, workers -> server CPUs, a sentence for the docs)."""
    if args.no_pin or not loadgen.taskset_prefix([0]):
        return None, lambda workers: None, "Nothing pinned to CPUs (no taskset, or --no-pin)."
    allowed = sorted(os.sched_getaffinity(0))
    client = [c for c in args.client_cpus if c in allowed] or allowed[:1]
    rest = [c for c in allowed if c not in client]

    def server_cpus(workers: int) -> list[int]:
        if args.server_cpus:
            return args.server_cpus
        return rest[:workers] if len(rest) >= workers else allowed

    def cpus(c: list[int]) -> str:
        return ",".join(map(str, c))

    text = f"Server pinned to CPU {cpus(server_cpus(1))}"
    for w in sorted(set(args.workers) - {1}):
        shared = " (shared with wrk)" if set(server_cpus(w)) & set(client) else ""
        text += f" ({w} workers: CPUs {cpus(server_cpus(w))}{shared})"
    return client, server_cpus, f"{text}, wrk and the suite to CPU {cpus(client)} (taskset)."


def _tool(args: argparse.Namespace) -> str:
    if args.load_generator != "auto":
        if args.load_generator == "wrk" and not loadgen.wrk_path():
            sys.exit("bench: wrk is not installed; Debian/Ubuntu: apt-get install wrk")
        return args.load_generator
    if loadgen.wrk_path():
        return "wrk"
    if args.smoke:
        print("bench: wrk not found, the smoke run uses the Python load generator")
        return "python"
    sys.exit("bench: wrk is not installed; Debian/Ubuntu: apt-get install wrk")


def _peers_bin(args: argparse.Namespace, wanted_servers: list[str]) -> tuple[Path, dict]:
    """Make sure the peers' venv has the wanted peers (and matplotlib for the chart)."""
    wanted = [s for s in wanted_servers if s in servers.PEERS]
    if wanted and "flask" in args.workloads:
        wanted.append("flask")
    if args.write_docs and importlib.util.find_spec("matplotlib") is None:
        wanted.append("matplotlib")
    have: dict = {}
    if wanted:
        have = peers.ensure(args.peers_venv, wanted, install=not args.no_install)
    return args.peers_venv / "bin", have


# --- running ---------------------------------------------------------------------------------


def _line(run: dict[str, Any]) -> str:
    head = f"{run['workload']:<7} {run['label']:<38}"
    if "error" in run:
        return f"{head} FAILED: {run['error']}"
    extra = ""
    if run.get("rss_per_idle_kib") is not None:
        extra = (
            f" idle={run['idle_open']}/{run['idle_wanted']} alive={run['idle_alive_after']}"
            f" KiB/idle={run['rss_per_idle_kib']:.2f}"
            f" drop={run['throughput_drop'] * 100:.1f}%"
        )
    errs = run["non_2xx"] + run["socket_errors"]
    return (
        f"{head} rps={run['rps']:<10.0f} p99={report.ms(run['p99_ms']):<9} "
        f"cpu_us/req={report._num(run['cpu_us_per_req'], '.2f'):<6} "
        f"ctx/req={report._num(run['ctx_per_req'], '.3f'):<6} "
        f"rss={report.mib(run['rss_hwm_kib'])}{extra}{f' errors={errs}' if errs else ''}"
    )


def measure_all(
    args: argparse.Namespace,
    setup: runner.Setup,
    server_cpus: Any,
    peers_bin: Path,
    available: list[str],
) -> list[dict[str, Any]]:
    ferrule = tuple(args.ferrule.split())
    runs: list[dict[str, Any]] = []
    for name in args.workloads:
        workload = WORKLOADS[name]
        threads = args.sleepy_threads if workload.sleepy else args.threads
        for workers in args.workers:
            for rep in range(args.repetitions):
                order = available if rep % 2 == 0 else available[::-1]
                for server in order:
                    launch = servers.launch(
                        server,
                        workload,
                        ferrule=ferrule,
                        peers_bin=peers_bin,
                        port=args.port,
                        threads=threads,
                        workers=workers,
                    )
                    if launch is None:
                        continue
                    tag = f"{name}-{server}-w{workers}-r{rep}"
                    run = {
                        "workload": name,
                        "server": server,
                        "workers": workers,
                        "rep": rep,
                        "label": launch.label,
                        "threads": launch.threads,
                        **runner.measure(setup, workload, launch, server_cpus(workers), tag),
                    }
                    runs.append(run)
                    print(_line(run), flush=True)
    return runs


def _floor_python(args: argparse.Namespace) -> str:
    """The interpreter ferrule runs the apps in: the python next to the ferrule command (its
    venv's), else this one."""
    py = Path(args.ferrule.split()[0]).parent / "python"
    return str(py) if py.exists() else sys.executable


def measure_floors(args: argparse.Namespace, server_cpus: Any) -> dict[str, Any]:
    """The in-process floor of each FLOOR_WORKLOADS workload run, measured once, pinned to the
    (1-worker) server's CPU, in ferrule's interpreter; a failure is reported and left out."""
    cpus = server_cpus(1)
    floors: dict[str, Any] = {}
    for name in (w for w in args.workloads if w in FLOOR_WORKLOADS):
        argv = [_floor_python(args), str(HERE / "floor.py"), "--workload", name, "--json"]
        argv += ["--calls", str(FLOOR_CALLS)]
        if cpus:
            argv += ["--cpu", str(cpus[0])]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=FLOOR_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"bench: no in-process floor for {name}: {exc}")
            continue
        if done.returncode != 0:
            print(f"bench: no in-process floor for {name}: {done.stderr.strip()[-300:]}")
            continue
        floors[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:<7} in-process floor: {floors[name]['us_per_call']:.2f} µs/call", flush=True)
    return floors


def write_docs(res: dict[str, Any], source: Path, docs: Path, peers_venv: Path) -> None:
    md, png = docs / "benchmarks.md", docs / "benchmarks.png"
    chart: str | None = png.name
    if importlib.util.find_spec("matplotlib") is not None:
        import chart as chart_mod

        chart_mod.draw(res, png)
    elif (peers_venv / "bin" / "python").exists():
        done = subprocess.run(
            [str(peers_venv / "bin" / "python"), str(HERE / "chart.py"), str(source), str(png)],
            check=False,
        )
        if done.returncode != 0:
            chart = None
    else:
        chart = None
    if chart is None:
        print("bench: no chart drawn (matplotlib is neither here nor in the peers' venv)")
    existing = md.read_text() if md.exists() else None
    try:
        shown = source.resolve().relative_to(ROOT)
    except ValueError:
        shown = Path(source.name)
    md.write_text(report.markdown(res, f"`{shown}`", chart, existing))
    print(f"bench: wrote {md}" + (f" and {png}" if chart else ""))


def print_tables(res: dict[str, Any]) -> None:
    print("\n".join(["", *report.summary_table(res), ""]))
    for name in res["meta"]["workloads"]:
        table = report.idle_table(res) if name == "idle" else report.workload_table(res, name)
        floor = report.floor_line(res, name)
        print("\n".join([f"{name}:", *table, *([floor] if floor else []), ""]))


def smoke_check(res: dict[str, Any], path: Path) -> list[str]:
    """What makes the smoke run fail: the suite could not measure (never a speed)."""
    problems = []
    reread = results.load(path)
    if reread != res:
        problems.append("the results file does not read back the same")
    for run in reread["runs"]:
        if "error" in run:
            problems.append(f"{run['label']}: {run['error']}")
            continue
        if run["requests"] <= 0:
            problems.append(f"{run['label']}: no request answered")
        if run["non_2xx"] or run["socket_errors"]:
            problems.append(
                f"{run['label']}: {run['non_2xx']} non-2xx answers, "
                f"{run['socket_errors']} socket errors"
            )
        if run["cpu_s"] < 0 or run["ctx_switches"] < 0 or run["rss_hwm_kib"] <= 0:
            problems.append(f"{run['label']}: /proc readings make no sense: {run}")
    if not reread["runs"]:
        problems.append("no run was made")
    report.markdown(reread, path.name, None)  # the page must still render
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    if args.from_results:
        res = results.load(args.from_results)
        print_tables(res)
        if args.write_docs:
            write_docs(res, args.from_results, args.docs_dir, args.peers_venv)
        return 0

    tmp = None
    if args.smoke:
        args.workloads, args.servers, args.seconds = ["hello"], ["ferrule"], 1.0
        args.repetitions, args.workers, args.write_docs = 1, [1], False
        tmp = tempfile.TemporaryDirectory(prefix="ferrule-bench-smoke-")
        args.output_dir = Path(tmp.name)

    if not Path(args.ferrule.split()[0]).exists():
        sys.exit(f"bench: no ferrule at {args.ferrule}: run `make develop`, or pass --ferrule")
    tool = _tool(args)
    if "idle" in args.workloads:
        limit = raise_fd_limit(args.idle_connections + 4096)
        if limit < args.idle_connections + 100:
            print(f"bench: the open-file limit is {limit}: idle uses {limit - 200} connections")
            args.idle_connections = max(limit - 200, 0)
    peers_bin, versions = _peers_bin(args, args.servers)
    available = [s for s in args.servers if s == "ferrule" or peers.PACKAGES[s] in versions]
    for s in sorted(set(args.servers) - set(available)):
        print(f"bench: {s} is not in {args.peers_venv}: skipped")
    client_cpus, server_cpus, pinning = _pinning(args)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine.describe(tuple(args.ferrule.split()), loadgen.wrk_path()),
        "pinning": pinning,
        "note": args.note,
        "workloads": args.workloads,
        "workers": args.workers,
        "servers": available,
        "peer_versions": {k: v for k, v in versions.items() if k in peers.PACKAGES.values()},
        "options": {
            "seconds": args.seconds,
            "connections": args.connections,
            "repetitions": args.repetitions,
            "threads": args.threads,
            "sleepy_threads": args.sleepy_threads,
            "idle_connections": args.idle_connections,
            "ferrule": args.ferrule,
            "load_generator": tool,
        },
    }
    floors = {} if args.smoke else measure_floors(args, server_cpus)
    with tempfile.TemporaryDirectory(prefix="ferrule-bench-logs-") as logdir:
        setup = runner.Setup(
            args.seconds, args.connections, client_cpus, tool, args.idle_connections, Path(logdir)
        )
        runs = measure_all(args, setup, server_cpus, peers_bin, available)
    summary = results.summarize(runs)
    res = {"meta": meta, "runs": runs, "summary": summary}
    res["efficiency"] = results.efficiencies(summary)
    if floors:
        res["floor"] = floors
    path = args.output_dir / f"{stamp}.json"
    results.save(res, path)
    print_tables(res)
    print(f"bench: results in {path}")

    if args.smoke:
        problems = smoke_check(res, path)
        if tmp is not None:
            tmp.cleanup()
        for p in problems:
            print(f"bench smoke: FAILED: {p}")
        if not problems:
            print("bench smoke: ok (the suite measured; no speed is checked)")
        return 1 if problems else 0
    if args.write_docs:
        write_docs(res, path, args.docs_dir, args.peers_venv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
