"""Slow and bad clients (issue 6): slowloris, stalled bodies, clients that never read,
clients that vanish mid-request or mid-response, half-close, a pipelined flood and huge
header counts. Each gets a defined answer, and the server keeps serving everyone else.

The apps are in tests/apps/hostile_slow.py; their iterables note close() in the log as
``SLOW-CLOSE <token>``. Leaks are counted in /proc/<pid>/fd and /proc/<pid>/task of the
server process. Every test is bounded in count and time and runs on loopback only.

The timeouts for a stalled body and for a client that does not read are `--io-timeout`.
`--max-connections` is not a setting yet (the core refuses connections past its table
instead of pausing accept): its test is marked xfail(strict) until it lands.
"""

from __future__ import annotations

import random
import select
import selectors
import socket
import struct
import sys
import threading
import time

import pytest
from conftest import shared_server, token, wait_until
from hostile_client import (
    Client,
    Closed,
    assert_no_findings,
    proc_counts,
    request,
    rss,
    server_side_open,
    wait_counts_at_most,
    wait_for_log_after,
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """`hostile_slow:app` on 2 threads with default timeouts."""
    with shared_server(tmp_path_factory, "slow", "--threads", "2", "hostile_slow:app") as s:
        yield s


def thread_bound(app_threads: int) -> int:
    """Most threads a server with `app_threads` may have: the app threads (started on
    demand), the main thread, the watcher and one more of the core's own. Fds must come
    back to their count before the test; threads only stay under this bound."""
    return app_threads + 3


def get(srv, path: str, timeout: float = 5.0) -> bytes:
    with Client.to(srv, timeout) as c:
        c.send(request("GET", path))
        r = c.response(timeout=timeout)
        assert r.status == 200, (r.status, r.body[:200])
        return r.body


def stalled_client(srv, path: str) -> socket.socket:
    """A client with a small receive buffer that asked for `path` and, once its response
    has begun, reads nothing more (until the test reads it)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(10)
    sock.connect((srv.host, srv.port))
    sock.sendall(request("GET", path))
    readable, _, _ = select.select([sock], [], [], 5)
    assert readable
    return sock


def read_response(sock: socket.socket, size: int) -> tuple[bytes, bytes]:
    """The head and the `size`-byte body of one response on `sock`."""
    got = bytearray()
    while b"\r\n\r\n" not in got:
        piece = sock.recv(65536)
        assert piece, f"closed after {len(got)} bytes"
        got += piece
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    got = bytearray(body)
    while len(got) < size:
        piece = sock.recv(1 << 20)
        assert piece, f"closed after {len(got)} body bytes"
        got += piece
    return head, bytes(got)


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- slowloris --------------------------------------------------------------------------------


def test_slowloris_1000_connections(start_server):
    """1,000 connections trickle a request head that never ends. A normal client is still
    answered promptly meanwhile, and each slow one is closed (408 or plain close) once its
    header timeout expires, not before."""
    header_timeout = 2.0
    s = start_server("--header-timeout", str(header_timeout), "--threads", "2", "hostile_slow:app")
    assert get(s, "/warm") == b"/warm"
    base_fds = proc_counts(s.proc.pid)[0]

    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    closed: dict[socket.socket, tuple[float, bytes]] = {}
    try:
        for _ in range(1000):
            sock = socket.create_connection((s.host, s.port), timeout=5)
            sock.sendall(b"GET /slowloris HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            opened[sock] = time.monotonic()
            sel.register(sock, selectors.EVENT_READ)
        last_open = max(opened.values())
        deadline = last_open + header_timeout + 3.0
        latencies: list[float] = []
        received: dict[socket.socket, bytes] = {}
        next_round = 0.0
        while len(closed) < len(opened) and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_round:
                next_round = now + 0.2
                for sock in opened:
                    if sock not in closed:
                        try:
                            sock.send(b"X-Trickle: 1\r\n")
                        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                            pass
                if now < last_open + header_timeout - 0.3:
                    t0 = time.monotonic()
                    assert get(s, "/normal", timeout=5) == b"/normal"
                    latencies.append(time.monotonic() - t0)
            for key, _ in sel.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if data:
                    received[sock] = received.get(sock, b"") + data
                    continue
                closed[sock] = (time.monotonic(), received.get(sock, b""))
                sel.unregister(sock)
        assert len(closed) == len(opened), (
            f"{len(opened) - len(closed)} of 1000 slow connections still open "
            f"{header_timeout + 3:.0f} s after their header timeout began"
        )
        early = [closed[k][0] - opened[k] for k in opened if closed[k][0] - opened[k] < 1.8]
        assert not early, f"{len(early)} closed before the header timeout, e.g. {early[:3]}"
        for _, data in closed.values():
            assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data[:200]
        assert len(latencies) >= 4, latencies
        # The issue asks for 100 ms, for every probe (measured here: 1-45 ms).
        assert max(latencies) < 0.1, sorted(round(x * 1000, 1) for x in latencies)
    finally:
        for sock in opened:
            sock.close()
        sel.close()
    assert get(s, "/after") == b"/after"
    wait_counts_at_most(s.proc.pid, base_fds, thread_bound(2))


# --- stalled bodies and clients that never read -----------------------------------------------


def test_stalled_body_times_out(start_server):
    s = start_server("--io-timeout", "1", "hostile_slow:app")
    with Client.to(s, 5) as c:
        c.send(request("POST", "/upload", [("Content-Length", "100000")], b"x" * 10))
        t0 = time.monotonic()
        try:
            r = c.response(timeout=4)
            assert r.status == 408, r.status
        except Closed:
            pass
        assert time.monotonic() - t0 >= 0.9


def test_client_that_never_reads_is_dropped(start_server):
    s = start_server("--io-timeout", "1", "--threads", "2", "hostile_slow:app")
    t = token()
    mark = len(s.log)
    with Client.to(s, 5) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send(request("GET", f"/big?{t}"))
        wait_for_log_after(s, mark, rf"SLOW-CLOSE {t}\n", timeout=5)


def test_client_that_never_reads_holds_no_one_else_up(srv):
    """A client that asks for 64 MiB and reads nothing costs at most its own thread: other
    clients are answered, and once it goes away the iterable is closed."""
    t = token()
    mark = len(srv.log)
    base_fds = proc_counts(srv.proc.pid)[0]
    stuck = socket.create_connection((srv.host, srv.port), timeout=5)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stuck.sendall(request("GET", f"/big?{t}"))
        for i in range(5):
            t0 = time.monotonic()
            assert get(srv, f"/other{i}") == f"/other{i}".encode()
            assert time.monotonic() - t0 < 1.0
    finally:
        reset(stuck)
    wait_for_log_after(srv, mark, rf"SLOW-CLOSE {t}\n", timeout=10)
    wait_counts_at_most(srv.proc.pid, base_fds, thread_bound(2))


@pytest.mark.parametrize("close", [False, True])
def test_a_whole_response_waits_for_a_slow_reader_without_a_thread(start_server, close):
    """A response the app returned whole, larger than the socket takes at once, waits in
    its connection for the client to read it, not in an app thread: with a single thread,
    others are answered meanwhile. The slow client then gets every byte, and its
    connection carries the next request (or closes, if the response said so)."""
    s = start_server("--threads", "1", "hostile_slow:app")
    # Larger than the kernel buffers on both ends take (here ~4 MiB: tcp_wmem's maximum).
    whole = bytes(range(256)) * (24 << 12)
    slow = socket.create_connection((s.host, s.port), timeout=10)
    try:
        extra = [("Connection", "close")] if close else []
        slow.sendall(request("GET", "/whole", extra))
        # Its response has begun (the app ran); it does not read it yet.
        readable, _, _ = select.select([slow], [], [], 5)
        assert readable
        for i in range(3):
            t0 = time.monotonic()
            assert get(s, f"/other{i}") == f"/other{i}".encode()
            assert time.monotonic() - t0 < 2.0
        got = bytearray()
        while True:
            piece = slow.recv(1 << 20)
            if not piece:
                break
            got += piece
            head, sep, body = bytes(got).partition(b"\r\n\r\n")
            if sep and len(body) >= len(whole):
                break
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert body == whole
        if close:
            assert slow.recv(1) == b""
        else:
            slow.sendall(request("GET", "/after"))
            reply = slow.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"/after"), reply
    finally:
        slow.close()


def test_slow_readers_of_one_shared_body_hold_no_copies_of_it(start_server):
    """The end of a body the app returned as one `bytes` object waits in its connection as
    a reference to that object, not as a copy: three clients that stop reading the same
    24 MiB module-level body (~20 MiB of it left unsent each) add far less than one copy
    to the server's memory, and hold no thread. Each then gets every byte."""
    s = start_server("--threads", "1", "hostile_slow:app")
    whole = bytes(range(256)) * (24 << 12)
    assert get(s, "/warm") == b"/warm"
    before = rss(s.proc.pid)
    slow = []
    try:
        for _ in range(3):
            slow.append(stalled_client(s, "/whole"))
        assert get(s, "/other") == b"/other"
        grown = rss(s.proc.pid) - before
        assert grown < 8 << 20, f"RSS grew by {grown >> 20} MiB for 3 parked 24 MiB bodies"
        for sock in slow:
            head, body = read_response(sock, len(whole))
            assert head.startswith(b"HTTP/1.1 200 ")
            assert body == whole
    finally:
        for sock in slow:
            sock.close()


def test_a_body_parked_by_reference_is_freed_once_sent(start_server):
    """The end of the app's body that waits for a slow reader keeps the app's object alive
    (it is sent from it, not from a copy) and lets go of it once sent: the object is freed
    then, although the loop thread that sent it may not hold the GIL."""
    s = start_server("--threads", "1", "hostile_slow:app")
    for _ in range(3):
        t = token()
        mark = len(s.log)
        sock = stalled_client(s, f"/freed?{t}")
        try:
            assert get(s, "/other") == b"/other"
            assert f"SLOW-FREED {t}" not in s.log[mark:], "freed while its end was parked"
            head, body = read_response(sock, 8 << 20)
            assert head.startswith(b"HTTP/1.1 200 ") and body == bytes(8 << 20)
            wait_for_log_after(s, mark, rf"^SLOW-FREED {t}$")
        finally:
            sock.close()


def test_a_parked_response_nobody_reads_is_dropped_after_the_io_timeout(start_server):
    """The end of a whole response waits for its client at most `--io-timeout` without
    progress (not the shorter keep-alive timeout of an idle connection); then the
    connection is closed and its memory freed."""
    s = start_server("--threads", "1", "--io-timeout", "3", "--keep-alive", "1", "hostile_slow:app")
    # Answered once its loop runs: by then the startup's own descriptors are closed (the
    # count may still hold this connection's: the server sees its close a moment later).
    assert get(s, "/warm") == b"/warm"
    base_fds = proc_counts(s.proc.pid)[0]
    slow = socket.create_connection((s.host, s.port), timeout=10)
    pid = s.proc.pid
    try:
        slow.sendall(request("GET", "/whole"))
        readable, _, _ = select.select([slow], [], [], 5)
        assert readable
        assert server_side_open(pid, slow)
        t0 = time.monotonic()
        # Bytes the client sends meanwhile (a pipelined request, a byte at a time) are not
        # progress: they do not put the close off.
        for byte in request("GET", "/next"):
            if not server_side_open(pid, slow):
                break
            try:
                slow.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        wait_until(lambda: not server_side_open(pid, slow), timeout=8, what="the close")
        assert 2.0 <= time.monotonic() - t0 < 5.0
        wait_counts_at_most(pid, base_fds, thread_bound(1), timeout=8)
        assert get(s, "/still") == b"/still"
    finally:
        slow.close()


def test_stalled_file_wrapper_downloads_hold_no_thread(start_server, tmp_path):
    """The end of a `wsgi.file_wrapper` file that a client stops reading waits in its
    connection (through a descriptor of its own), not in an app thread: with a single
    thread, others are answered meanwhile, and the app's file is closed at once. Each slow
    client then gets every byte, and its connection carries the next request."""
    data = random.Random(3).randbytes(1 << 20) * 24
    name = tmp_path / "download.bin"
    name.write_bytes(data)
    s = start_server("--threads", "1", "file_download:app", env={"FERRULE_TEST_FILE": str(name)})
    slow = []
    try:
        for _ in range(3):
            slow.append(stalled_client(s, "/file"))
        for i in range(5):
            t0 = time.monotonic()
            assert get(s, f"/other{i}") == f"/other{i}".encode()
            assert time.monotonic() - t0 < 2.0
        wait_for_log_after(s, 0, r"(?:FILE-CLOSED[\s\S]*){3}")
        for sock in slow:
            head, body = read_response(sock, len(data))
            assert head.startswith(b"HTTP/1.1 200 ")
            assert body == data
            sock.sendall(request("GET", "/after"))
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"/after"), reply
    finally:
        for sock in slow:
            sock.close()


def test_idle_keep_alive_connections_hold_no_thread(start_server):
    """200 idle keep-alive connections on a 1-thread server: a new client is still served."""
    s = start_server("--threads", "1", "--keep-alive", "30", "hostile_slow:app")
    idle = []
    try:
        for i in range(200):
            c = Client.to(s, 5)
            idle.append(c)
            c.send(request("GET", f"/idle{i}"))
            assert c.response().body == f"/idle{i}".encode()
        t0 = time.monotonic()
        assert get(s, "/fresh") == b"/fresh"
        assert time.monotonic() - t0 < 1.0
        # and the idle ones are still usable
        for c in idle[::50]:
            c.send(request("GET", "/again"))
            assert c.response().body == b"/again"
    finally:
        for c in idle:
            c.close()


# --- clients that go away ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_disconnect_mid_request_closes_iterable_and_leaks_nothing(srv, how):
    """20 clients send half of a 1 MB body to an app reading it, then vanish: each time the
    app's iterable is closed, no fd or thread is left behind, and the client going away is
    not logged as an application error (a reset once was, with a traceback)."""
    assert get(srv, "/warm") == b"/warm"
    base_fds = proc_counts(srv.proc.pid)[0]
    start = len(srv.log)
    for _ in range(20):
        t = token()
        mark = len(srv.log)
        sock = socket.create_connection((srv.host, srv.port), timeout=5)
        sock.sendall(request("POST", f"/upload?{t}", [("Content-Length", "1000000")]))
        sock.sendall(b"u" * 500_000)
        time.sleep(0)  # no wait needed: close() must come whatever the timing
        if how == "rst":
            reset(sock)
        else:
            sock.close()
        wait_for_log_after(srv, mark, rf"SLOW-CLOSE {t}\n", timeout=5)
    assert get(srv, "/still") == b"/still"
    wait_counts_at_most(srv.proc.pid, base_fds, thread_bound(2))
    logged = srv.log[start:]
    errors = [x for x in logged.splitlines() if "[ERROR]" in x and "SLOW-CLOSE" not in x]
    assert errors == [] and "Traceback" not in logged, logged[-3000:]


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_disconnect_mid_response_closes_iterable_and_leaks_nothing(srv, how):
    assert get(srv, "/warm") == b"/warm"
    base_fds = proc_counts(srv.proc.pid)[0]
    for _ in range(20):
        t = token()
        mark = len(srv.log)
        with Client.to(srv, 5) as c:
            c.send(request("GET", f"/stream?{t}"))
            got = 0
            while got < 200_000:
                chunk = c.sock.recv(65536)
                assert chunk, "the stream ended early"
                got += len(chunk)
            if how == "rst":
                reset(c.sock)
        wait_for_log_after(srv, mark, rf"SLOW-CLOSE {t}\n", timeout=5)
    assert get(srv, "/still") == b"/still"
    wait_counts_at_most(srv.proc.pid, base_fds, thread_bound(2))


# --- half-close -------------------------------------------------------------------------------


def test_half_close_after_pipelined_requests(srv):
    """Three requests, then the client shuts its sending side: three answers, in order,
    then the server closes (it will get no more requests)."""
    with Client.to(srv, 5) as c:
        c.send(b"".join(request("GET", f"/hc{i}") for i in range(3)))
        c.shutdown_write()
        for i in range(3):
            assert c.response(timeout=5).body == f"/hc{i}".encode()
        assert c.closed_within(2.0), "the server kept a half-closed connection open"


@pytest.mark.parametrize(
    "partial",
    [b"GET /half", b"GET /half HTTP/1.1\r\n", b"GET /half HTTP/1.1\r\nHost: x\r\n"],
    ids=["mid-line", "after-line", "mid-headers"],
)
def test_half_close_mid_head_is_closed_at_once(srv, partial):
    """A head that can never be completed: the server answers 400 or just closes, at once,
    not after the 30 s header timeout."""
    with Client.to(srv, 5) as c:
        c.send(partial)
        c.shutdown_write()
        try:
            r = c.response(timeout=2.0)
            assert r.status == 400, r.status
            assert c.closed_within(2.0)
        except Closed as e:
            assert e.partial == b""
        except TimeoutError as e:
            raise AssertionError("a half-closed partial head was kept open") from e


def test_half_close_mid_body_is_refused(srv):
    """A body that can never be completed: 400 (or a close), at once."""
    t = token()
    with Client.to(srv, 5) as c:
        c.send(request("POST", f"/upload?{t}", [("Content-Length", "100")], b"x" * 10))
        c.shutdown_write()
        try:
            r = c.response(timeout=2.0)
            assert r.status == 400, (r.status, r.body[:200])
            assert c.closed_within(2.0)
        except Closed as e:
            assert e.partial == b""
        except TimeoutError as e:
            raise AssertionError("a half-closed partial body was kept open") from e


# --- floods and huge heads ----------------------------------------------------------------------


def test_pipelined_flood_answered_in_order(srv):
    """2,000 requests in one burst: 2,000 answers, in order, while the client reads."""
    n = 2000
    burst = b"".join(request("GET", f"/f{i}") for i in range(n))
    with Client.to(srv, 10) as c:
        sender = threading.Thread(target=c.send, args=(burst,), daemon=True)
        t0 = time.monotonic()
        sender.start()
        for i in range(n):
            r = c.response(timeout=10)
            assert (r.status, r.body) == (200, f"/f{i}".encode()), i
        sender.join(10)
        assert time.monotonic() - t0 < 30
        c.send(request("GET", "/last"))
        assert c.response().body == b"/last"


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 100_000 + b"\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(50_000)),
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * (1 << 20) + b"\r\n\r\n",
    ],
    ids=["100k-fields", "50k-fields-unfinished", "1MiB-field"],
)
def test_huge_heads_get_431(srv, head):
    with Client.to(srv, 5) as c:
        c.send_pieces([head])
        r = c.response(timeout=5)
        assert r.status == 431, (r.status, r.body[:200])
        assert c.closed_within(5.0)
    assert get(srv, "/fine") == b"/fine"


def test_many_fields_within_the_ceiling_are_served(start_server):
    """With --limit-request-fields 0 (the 32768 ceiling), 20,000 distinct fields are a
    valid head: all of them reach the app."""
    s = start_server("--limit-request-fields", "0", "hostile_slow:app")
    head = b"GET /count HTTP/1.1\r\nHost: x\r\n"
    head += b"".join(b"X-F%d: v\r\n" % i for i in range(19_999)) + b"\r\n"
    with Client.to(s, 10) as c:
        c.send(head)
        r = c.response(timeout=10)
        assert (r.status, r.body) == (200, b"20000")


# --- connection limit -------------------------------------------------------------------------


def test_max_connections_queues_the_rest(start_server):
    """With --max-connections 10 and 10 connections held, an 11th is not served until one
    of the 10 goes away; then it is."""
    s = start_server("--max-connections", "10", "--keep-alive", "30", "hostile_slow:app")
    held = [Client.to(s, 5) for _ in range(10)]
    try:
        for c in held:
            c.send(request("GET", "/hold"))
            assert c.response().body == b"/hold"
        extra = Client.to(s, 5)
        extra.send(request("GET", "/extra"))
        assert extra.silent_for(0.5), "an 11th connection was served"
        held.pop().close()
        assert extra.response(timeout=3).body == b"/extra"
        extra.close()
    finally:
        for c in held:
            c.close()


def test_validators_found_nothing(srv):
    """No validator finding, panic or leaked traceback of the checks in the shared server's
    log (runs last in this module)."""
    assert_no_findings(srv)


def test_default_connection_limit_follows_the_open_files_limit(start_server):
    """Under `ulimit -n 128`, 120 clients do not exhaust the file table: the default limit
    (128 less a reserve of 32) leaves the rest queued, and each is served once others leave.

    Without the limit, accept() fails with EMFILE and the queued clients are never served."""
    command = ["prlimit", "--nofile=128:128", "--", sys.executable, "-m", "ferrule"]
    s = start_server("--keep-alive", "30", "hostile_slow:app", command=command)
    clients = [Client.to(s, 5) for _ in range(120)]
    try:
        for i, c in enumerate(clients):
            c.send(request("GET", f"/c{i}"))
        served = [c for c in clients[:96] if c.response().body.startswith(b"/c")]
        assert len(served) == 96
        assert all(c.silent_for(0.05) for c in clients[96:]), "served past the limit"
        for c in clients[:96]:
            c.close()
        for i, c in enumerate(clients[96:], start=96):
            assert c.response(timeout=5).body == f"/c{i}".encode()
    finally:
        for c in clients:
            c.close()
    assert "Too many open files" not in s.log
    assert "96 connections open (max_connections)" in s.log
