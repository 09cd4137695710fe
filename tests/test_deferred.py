"""Held responses (src/server/deferred.rs): a small complete response may wait for the
loop's next flush, but never behind an app that blocks, and never out of order.
"""

from __future__ import annotations

import time

import pytest
from conftest import shared_server
from hostile_client import Client, request


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    static = tmp_path_factory.mktemp("static")
    (static / "f.txt").write_bytes(b"static-body")
    with shared_server(
        tmp_path_factory,
        "deferred",
        "--threads",
        "4",
        "--static",
        f"/s={static}",
        "deferred_app:app",
    ) as s:
        yield s


@pytest.mark.parametrize("first", ["fast", "sleep"])
def test_a_held_response_does_not_wait_for_a_blocking_app(srv, first):
    with Client.to(srv, 5) as fast, Client.to(srv, 5) as slow:
        pair = [(fast, "/fast"), (slow, "/sleep")]
        if first == "sleep":
            pair.reverse()
        t0 = time.monotonic()
        for c, path in pair:
            c.send(request("GET", path))
        r = fast.response(timeout=5)
        took = time.monotonic() - t0
        assert (r.status, r.body) == (200, b"/fast")
        assert took < 0.5, f"the fast response waited {took:.2f} s behind the blocking app"
        assert slow.response(timeout=5).body == b"/sleep"


def test_pipelined_responses_keep_their_order(srv):
    with Client.to(srv, 5) as c:
        c.send(request("GET", "/a") + request("GET", "/s/f.txt") + request("GET", "/b"))
        bodies = [c.response(timeout=5).body for _ in range(3)]
    assert bodies == [b"/a", b"static-body", b"/b"]


def test_many_connections_each_get_their_own_answer(srv):
    clients = [Client.to(srv, 5) for _ in range(40)]
    try:
        for round_ in range(3):
            for i, c in enumerate(clients):
                c.send(request("GET", f"/c{i}-{round_}"))
            for i, c in enumerate(clients):
                assert c.response(timeout=5).body == f"/c{i}-{round_}".encode()
    finally:
        for c in clients:
            c.close()
