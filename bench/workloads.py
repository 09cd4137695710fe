"""The workloads: which app in bench/apps, which request, how many connections."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    name: str
    app: str
    """Module in bench/apps exposing ``app``."""
    path: str
    what: str
    """One line for the docs."""
    method: str = "GET"
    body_bytes: int = 0
    """Size of the body every request POSTs (sent by bench/upload.lua)."""
    connections: int | None = None
    """Fixed number of connections; None means the --connections option."""
    sleepy: bool = False
    """The app blocks: ferrule gets --sleepy-threads instead of --threads."""
    idle: bool = False
    """10,000 idle keep-alive connections next to the active clients (see idle.py)."""


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("hello", "hello", "/", "hello world, 13-byte body"),
        Workload("flask", "flaskapp", "/json", "Flask app, small JSON answer"),
        Workload("big", "big", "/", "64 KiB response body"),
        Workload(
            "upload",
            "big",
            "/upload",
            "1 MiB POST body read by the app, 16 connections",
            method="POST",
            body_bytes=1024 * 1024,
            connections=16,
        ),
        Workload("sleepy", "sleepy", "/", "app blocks 10 ms per request", sleepy=True),
        Workload(
            "idle",
            "hello",
            "/",
            "hello, with 10,000 idle keep-alive connections held open",
            idle=True,
        ),
    )
}


def parse_list(text: str) -> list[Workload]:
    """``hello,flask`` or ``all`` -> workloads; ValueError names an unknown one."""
    if text == "all":
        return list(WORKLOADS.values())
    out = []
    for name in filter(None, (t.strip() for t in text.split(","))):
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
        out.append(WORKLOADS[name])
    return out
