"""Misbehaving apps (issue 6): each gets a defined response, an error-log line, an access-log
line, and the server keeps serving.

The issue's 13 cases and where each is tested (tp = test_pep3333.py):

1. raises before start_response: tp::test_exception_before_start_response
2. raises after it: tp::test_exception_after_start_response_before_body and
   tp::test_exception_after_body_started
3. returns str: tp::test_misbehaving_app_is_500[returns_str]
4. returns a non-iterable: tp::test_misbehaving_app_is_500[returns_int, returns_none]
5. never calls start_response: tp::test_misbehaving_app_is_500[no_start_response*]
6. calls it twice without exc_info: test_start_response_twice (here)
7. header values with CR/LF or non-latin-1: test_bad_header_value (here)
8. Content-Length too short: test_body_shorter_than_content_length (here)
9. Content-Length too long: tp::test_app_body_longer_than_content_length_truncated
10. generator raising mid-stream: tp::test_close_called_when_iterable_raises
11. close() that raises: tp::test_close_that_raises_is_logged_and_response_completes
12. one chunk of 100 MiB: test_one_100_mib_chunk (here)
13. a generator yielding slowly: test_slow_generator_streams (here)

(6 and 7 are also in test_pep3333.py, which checks the 500 and the log but not that the
server keeps serving nor the access log; 8 there checks the close but not the log.)

The apps are in tests/apps/hostile_misbehaving.py; each request's path carries a token so a
test finds its own access-log line.
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import shared_server, token
from hostile_client import (
    Client,
    assert_no_findings,
    proc_counts,
    request,
    rss,
    wait_for_log_after,
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    args = ("--threads", "2", "--access-log", "hostile_misbehaving:app")
    with shared_server(tmp_path_factory, "misbehaving", *args) as s:
        yield s


def access_line(srv, mark: int, path: str, status: int) -> re.Match[str]:
    """The access-log line of the request for `path`, with `status`."""
    return wait_for_log_after(srv, mark, rf'"GET {re.escape(path)}[ ?][^"]*" {status} (\d+|-)')


def error_record(srv, mark: int, pattern: str) -> re.Match[str]:
    """An ERROR or WARNING line of the error log after `mark` matching `pattern`."""
    return wait_for_log_after(srv, mark, rf"\[(ERROR|WARNING)\] [^\n]*{pattern}")


def assert_serving(srv) -> None:
    """A fresh connection is answered, twice on the same connection."""
    with Client.to(srv, 5) as c:
        for _ in range(2):
            c.send(request("GET", "/ok"))
            r = c.response(timeout=5)
            assert (r.status, r.body) == (200, b"ok")


def test_start_response_twice(srv):
    path = f"/twice/{token()}"
    mark = len(srv.log)
    with Client.to(srv, 5) as c:
        c.send(request("GET", path))
        r = c.response(timeout=5)
    assert r.status == 500
    assert b"must not be sent" not in r.body
    error_record(srv, mark, re.escape(path))
    wait_for_log_after(srv, mark, r"start_response")
    access_line(srv, mark, path, 500)
    assert_serving(srv)


@pytest.mark.parametrize("kind", ["crlf", "lf", "cr", "non-latin1"])
def test_bad_header_value(srv, kind):
    path = f"/bad_header/{token()}"
    mark = len(srv.log)
    with Client.to(srv, 5) as c:
        c.send(request("GET", f"{path}?{kind}"))
        r = c.response(timeout=5)
    assert r.status == 500
    assert r.header("X-Injected") is None and r.header("X-Bad") is None
    assert b"must not be sent" not in r.body
    error_record(srv, mark, re.escape(path))
    access_line(srv, mark, path, 500)
    assert_serving(srv)


def test_body_shorter_than_content_length(srv):
    """Declared 10 bytes, sent 5: the client gets the 5 and then a close (never a response
    that looks complete), and the mismatch is logged."""
    path = f"/short_body/{token()}"
    mark = len(srv.log)
    with Client.to(srv, 5) as c:
        c.send(request("GET", path))
        r = c.response(timeout=5)
        assert (r.status, r.header("Content-Length"), r.body) == (200, "10", b"01234")
        assert not r.complete, "the short body must end with the connection"
    error_record(srv, mark, "Content-Length")
    access_line(srv, mark, path, 200)
    assert_serving(srv)


def test_one_100_mib_chunk(srv):
    """A single 100 MiB chunk is sent whole (chunked: the validator hides that the body is a
    list), and the server does not keep the 100 MiB once the response is done."""
    path = f"/huge_chunk/{token()}"
    mark = len(srv.log)
    with Client.to(srv, 30) as c:
        c.send(request("GET", path))
        r = c.response(timeout=60)
        assert r.status == 200 and r.complete
        assert len(r.body) == 100 << 20 and r.body.count(b"h") == 100 << 20
        c.send(request("GET", "/ok"))  # the connection is still usable
        assert c.response(timeout=5).body == b"ok"
    access_line(srv, mark, path, 200)
    assert_serving(srv)
    deadline = time.monotonic() + 10
    while rss(srv.proc.pid) > 150 << 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rss(srv.proc.pid) <= 150 << 20, f"RSS {rss(srv.proc.pid) >> 20} MiB after the response"
    assert proc_counts(srv.proc.pid)[0] < 50


def test_slow_generator_streams(srv):
    """Five chunks 0.2 s apart: each reaches the client as it is yielded (the first long
    before the last), and other clients are served meanwhile."""
    path = f"/slow_generator/{token()}"
    mark = len(srv.log)
    with Client.to(srv, 5) as slow:
        t0 = time.monotonic()
        slow.send(request("GET", path))
        head = b""
        while b"chunk0;" not in head:
            data = slow.sock.recv(65536)
            assert data, "closed before the first chunk"
            head += data
        first = time.monotonic() - t0
        assert first < 0.5, f"the first chunk took {first:.2f}s: the body was buffered"
        assert_serving(srv)  # while the generator sleeps
        slow.buf = bytearray(head)
        r = slow.response(timeout=5)
        total = time.monotonic() - t0
    assert r.status == 200 and r.complete
    assert r.body == b"chunk0;chunk1;chunk2;chunk3;chunk4;"
    assert total >= 0.75, f"all five chunks in {total:.2f}s: the sleeps did not happen"
    access_line(srv, mark, path, 200)


def test_validators_found_nothing(srv):
    """No validator finding, panic or leaked traceback of the checks in the shared server's
    log (runs last in this module)."""
    assert_no_findings(srv)
