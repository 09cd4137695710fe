"""Static files (issue 7): `--static /url=dir`, answered by the Rust core before any Python.

The tree is made in a temporary directory at test time: small text files, a 10,000-byte
file for ranges, a 50 MiB file for sendfile, a directory, symlinks pointing inside and
outside the root, and a secret beside the root that no request may reach. The app beside it
counts its calls, so the tests can tell that a static request never reached Python.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ServerProcess, ferrule_env, run_ferrule, wait_until
from hostile_client import Client, request

pytestmark = pytest.mark.timeout(90)

TIMEOUT = 10
CACHE_CONTROL = "public, max-age=3600"
HELLO = b"hello, world\n"
SECRET = b"TOP SECRET, never served\n"
DATA = bytes(random.Random(5).randbytes(10_000))
BIG_SIZE = 50 << 20

APP = """\
import threading

_lock = threading.Lock()
calls = 0


def app(environ, start_response):
    global calls
    with _lock:
        calls += 1
        n = calls
    body = f"app {environ['PATH_INFO']} calls={n}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def make_tree(base: Path) -> dict[str, object]:
    """The files served at /static (and the secret beside them); returns facts for tests."""
    root = base / "public"
    (root / "css").mkdir(parents=True)
    (root / "sub").mkdir()
    (base / "private").mkdir()
    (base / "secret").write_bytes(SECRET)
    (base / "private" / "x.txt").write_bytes(SECRET)
    (root / "hello.txt").write_bytes(HELLO)
    (root / "css" / "site.css").write_bytes(b"body { color: red }\n")
    (root / "app.js").write_bytes(b"console.log('hi');\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / "a b.txt").write_bytes(b"spaced\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "data.bin").write_bytes(DATA)
    (root / "sub" / "inner.txt").write_bytes(b"inner\n")
    os.symlink("css/site.css", root / "link-in")
    os.symlink("../secret", root / "link-out")
    os.symlink(str(base / "secret"), root / "link-out-abs")
    os.symlink("../private", root / "dir-out")
    big = root / "big.bin"
    digest = hashlib.sha256()
    rng = random.Random(11)
    with open(big, "wb") as f:
        block = rng.randbytes(1 << 20)
        for i in range(BIG_SIZE >> 20):
            chunk = bytes([i % 256]) + block[1:]
            digest.update(chunk)
            f.write(chunk)
    (base / "static_test_app.py").write_text(APP)
    return {"root": root, "big_sha256": digest.hexdigest()}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    return base, make_tree(base)


def start(base: Path, *extra: str, command: list[str] | None = None) -> ServerProcess:
    srv = ServerProcess(
        [
            "--bind",
            "127.0.0.1:0",
            "--static",
            f"/static={base / 'public'}",
            *extra,
            "static_test_app:app",
        ],
        base,
        ferrule_env(),
        command=command,
    )
    return srv.wait_ready()


@pytest.fixture(scope="module")
def srv(tree):
    base, _ = tree
    server = start(
        base,
        "--static-cache-control",
        CACHE_CONTROL,
        "--access-logfile",
        str(base / "access.log"),
        "--threads",
        "4",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def facts(tree):
    return tree[1]


def get(srv, path: str, **headers: str) -> requests.Response:
    return requests.get(srv.url + path, headers=headers, timeout=TIMEOUT)


def raw(srv, target: str, method: str = "GET", headers=()) -> tuple[int, bytes]:
    """One request with exactly this target, on a raw socket; (status, body)."""
    with Client.to(srv, timeout=TIMEOUT) as c:
        c.send(request(method, target, headers=list(headers)))
        r = c.response(method)
        return r.status, r.body


def app_calls(srv) -> int:
    body = get(srv, "/__calls").text
    m = re.search(r"calls=(\d+)", body)
    assert m, body
    return int(m.group(1))


# --- 200, HEAD, types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, ctype, body",
    [
        ("/static/hello.txt", "text/plain; charset=utf-8", HELLO),
        ("/static/css/site.css", "text/css; charset=utf-8", b"body { color: red }\n"),
        ("/static/app.js", "text/javascript; charset=utf-8", b"console.log('hi');\n"),
        ("/static/logo.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
        ("/static/data.bin", "application/octet-stream", DATA),
        ("/static/a%20b.txt", "text/plain; charset=utf-8", b"spaced\n"),
        ("/static/empty.txt", "text/plain; charset=utf-8", b""),
        ("/static/hello.txt?v=123#frag", "text/plain; charset=utf-8", HELLO),
        ("/st%61tic/hello.txt", "text/plain; charset=utf-8", HELLO),
        ("/static//sub//inner.txt", "text/plain; charset=utf-8", b"inner\n"),
    ],
)
def test_get_serves_the_file(srv, path, ctype, body):
    r = get(srv, path)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Content-Type"] == ctype
    assert r.headers["Content-Length"] == str(len(body))
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Cache-Control"] == CACHE_CONTROL
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', r.headers["ETag"])
    assert email.utils.parsedate_to_datetime(r.headers["Last-Modified"])


def test_last_modified_is_the_files_mtime(srv, facts):
    mtime = int(os.stat(facts["root"] / "hello.txt").st_mtime)
    r = get(srv, "/static/hello.txt")
    assert email.utils.parsedate_to_datetime(r.headers["Last-Modified"]).timestamp() == mtime


def test_head_has_the_same_headers_and_no_body(srv):
    g = get(srv, "/static/data.bin")
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=TIMEOUT)
    try:
        conn.request("HEAD", "/static/data.bin")
        h = conn.getresponse()
        assert h.status == 200
        assert h.read() == b""
        for name in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Cache-Control"):
            assert h.getheader(name) == g.headers[name], name
        # The connection is still good for another request.
        conn.request("GET", "/static/hello.txt")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == HELLO
    finally:
        conn.close()


def test_static_requests_never_reach_the_app(srv):
    before = app_calls(srv)
    for path in ("/static/hello.txt", "/static/missing", "/static/sub", "/static", "/static/"):
        get(srv, path)
    requests.post(srv.url + "/static/hello.txt", data=b"x", timeout=TIMEOUT)
    raw(srv, "/static/../secret")
    assert app_calls(srv) == before + 1  # only the /__calls request itself


@pytest.mark.parametrize("path", ["/other", "/staticfile", "/stat", "/", "/x/static/hello.txt"])
def test_the_app_still_serves_other_paths(srv, path):
    r = get(srv, path)
    assert r.status_code == 200
    assert r.text.startswith(f"app {path} ")


# --- 304 -----------------------------------------------------------------------------------


def test_etag_and_if_none_match(srv):
    etag = get(srv, "/static/hello.txt").headers["ETag"]
    r = get(srv, "/static/hello.txt", **{"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["ETag"] == etag
    assert r.headers["Cache-Control"] == CACHE_CONTROL
    assert "Content-Length" not in r.headers
    assert get(srv, "/static/hello.txt", **{"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    assert get(srv, "/static/hello.txt", **{"If-None-Match": "*"}).status_code == 304
    r = get(srv, "/static/hello.txt", **{"If-None-Match": '"other"'})
    assert r.status_code == 200 and r.content == HELLO
    # Another file has another tag.
    assert get(srv, "/static/app.js", **{"If-None-Match": etag}).status_code == 200


def test_last_modified_and_if_modified_since(srv):
    lm = get(srv, "/static/hello.txt").headers["Last-Modified"]
    assert get(srv, "/static/hello.txt", **{"If-Modified-Since": lm}).status_code == 304
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    assert get(srv, "/static/hello.txt", **{"If-Modified-Since": later}).status_code == 304
    old = "Thu, 01 Jan 1998 00:00:00 GMT"
    r = get(srv, "/static/hello.txt", **{"If-Modified-Since": old})
    assert r.status_code == 200 and r.content == HELLO
    r = get(srv, "/static/hello.txt", **{"If-Modified-Since": "not a date"})
    assert r.status_code == 200


def test_if_none_match_wins_over_if_modified_since(srv):
    r = get(srv, "/static/hello.txt")
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    old = "Thu, 01 Jan 1998 00:00:00 GMT"
    # A tag that does not match: 200 even though the date says "not modified".
    r = get(srv, "/static/hello.txt", **{"If-None-Match": '"other"', "If-Modified-Since": lm})
    assert r.status_code == 200
    # A tag that matches: 304 even though the date says "modified".
    r = get(srv, "/static/hello.txt", **{"If-None-Match": etag, "If-Modified-Since": old})
    assert r.status_code == 304


def test_if_match_and_if_unmodified_since(srv):
    etag = get(srv, "/static/hello.txt").headers["ETag"]
    assert get(srv, "/static/hello.txt", **{"If-Match": etag}).status_code == 200
    assert get(srv, "/static/hello.txt", **{"If-Match": '"other"'}).status_code == 412
    old = "Thu, 01 Jan 1998 00:00:00 GMT"
    assert get(srv, "/static/hello.txt", **{"If-Unmodified-Since": old}).status_code == 412


# --- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, start, end",
    [
        ("bytes=0-99", 0, 99),  # first
        ("bytes=1000-1999", 1000, 1999),  # middle
        ("bytes=-500", 9500, 9999),  # suffix
        ("bytes=100-", 100, 9999),  # open
        ("bytes=9000-20000", 9000, 9999),  # past the end: cut
        ("bytes=-20000", 0, 9999),  # a suffix longer than the file
    ],
)
def test_single_range(srv, spec, start, end):
    r = get(srv, "/static/data.bin", Range=spec)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/10000"
    assert r.headers["Content-Length"] == str(end - start + 1)
    assert r.content == DATA[start : end + 1]


@pytest.mark.parametrize("spec", ["bytes=10000-", "bytes=20000-30000", "bytes=-0"])
def test_unsatisfiable_range(srv, spec):
    r = get(srv, "/static/data.bin", Range=spec)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */10000"


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=5-1", "items=0-5", "bytes=x"])
def test_several_or_invalid_ranges_get_the_whole_file(srv, spec):
    r = get(srv, "/static/data.bin", Range=spec)
    assert r.status_code == 200
    assert r.content == DATA


def test_if_range(srv):
    r = get(srv, "/static/data.bin")
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    assert get(srv, "/static/data.bin", Range="bytes=0-9", **{"If-Range": etag}).status_code == 206
    assert get(srv, "/static/data.bin", Range="bytes=0-9", **{"If-Range": lm}).status_code == 206
    r = get(srv, "/static/data.bin", Range="bytes=0-9", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == DATA
    old = "Thu, 01 Jan 1998 00:00:00 GMT"
    assert get(srv, "/static/data.bin", Range="bytes=0-9", **{"If-Range": old}).status_code == 200
    # A weak tag never satisfies If-Range.
    r = get(srv, "/static/data.bin", Range="bytes=0-9", **{"If-Range": f"W/{etag}"})
    assert r.status_code == 200


def test_range_with_curl(srv, tmp_path):
    out = tmp_path / "part"
    url = srv.url + "/static/data.bin"
    proc = subprocess.run(
        ["curl", "-s", "-r", "-500", "-o", str(out), "-w", "%{http_code}", url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.stdout == "206"
    assert out.read_bytes() == DATA[-500:]


def test_head_ignores_range(srv):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=TIMEOUT)
    try:
        conn.request("HEAD", "/static/data.bin", headers={"Range": "bytes=0-9"})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Length") == "10000"
        assert r.read() == b""
    finally:
        conn.close()


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405(srv, method):
    r = requests.request(method, srv.url + "/static/hello.txt", timeout=TIMEOUT)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path", ["/static/missing.txt", "/static/sub", "/static/sub/", "/static", "/static/"]
)
def test_no_file_is_404_not_the_app(srv, path):
    r = get(srv, path)
    assert r.status_code == 404
    assert not r.text.startswith("app ")


TRAVERSALS = [
    "/static/../secret",
    "/static/%2e%2e/secret",
    "/static/%2E%2E/secret",
    "/static/.%2e/secret",
    "/static/..%2fsecret",
    "/static/..%2Fsecret",
    "/static/a%2f..%2f..%2fsecret",
    "/static/%2e%2e%2fsecret",
    "/static/sub/../../secret",
    "/static/..\\secret",
    "/static/..%5csecret",
    "/static/sub%5c..%5c..%5csecret",
    "/static/%00",
    "/static/hello.txt%00.css",
    "/static/link-out",
    "/static/link-out-abs",
    "/static/dir-out/x.txt",
    "/static/%252e%252e/secret",
    "/static/./hello.txt",
    "http://h.test/static/../secret",
    "/static%2f..%2fsecret",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_is_refused(srv, target):
    status, body = raw(srv, target)
    assert status == 404, target
    assert SECRET not in body


@pytest.mark.parametrize("target", ["/static/%zz", "/static/a%2", "/static/%"])
def test_malformed_encoding_is_400(srv, target):
    status, _ = raw(srv, target)
    assert status == 400


def test_symlink_inside_the_root_is_followed(srv):
    r = get(srv, "/static/link-in")
    assert r.status_code == 200
    assert r.content == b"body { color: red }\n"


# --- big files, slow readers, keep-alive ---------------------------------------------------


def test_50_mib_file_via_sendfile(srv, facts):
    r = requests.get(srv.url + "/static/big.bin", stream=True, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(BIG_SIZE)
    digest = hashlib.sha256()
    got = 0
    for chunk in r.iter_content(1 << 20):
        digest.update(chunk)
        got += len(chunk)
    assert got == BIG_SIZE
    assert digest.hexdigest() == facts["big_sha256"]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def paced_download(srv, rate: int) -> tuple[str, float]:
    """Downloads /static/big.bin reading at about `rate` bytes a second (the reader is
    slow, the server is not): the body's sha256 and the seconds the body took."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(TIMEOUT)
    sock.connect((srv.host, srv.port))
    try:
        sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        digest, got = hashlib.sha256(body), len(body)
        t0 = time.monotonic()
        while got < BIG_SIZE:
            chunk = sock.recv(min(256 << 10, BIG_SIZE - got))
            assert chunk, f"connection closed after {got} bytes"
            digest.update(chunk)
            got += len(chunk)
            ahead = got / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        return digest.hexdigest(), time.monotonic() - t0
    finally:
        sock.close()


def test_slow_reader_waits_without_spinning_or_blocking_others(srv, facts):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(TIMEOUT)
    sock.connect((srv.host, srv.port))
    try:
        sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        digest = hashlib.sha256(body)
        got = len(body)
        # The reader stalls: the server's buffers fill and its thread waits for writability.
        # Meanwhile other clients are served at once...
        for _ in range(20):
            r = get(srv, "/static/hello.txt")
            assert r.status_code == 200 and r.content == HELLO
            assert get(srv, "/other").status_code == 200
        # ... and the waiting thread does not spin: over a second of stall, the process
        # uses a small fraction of a CPU (a spinning thread would use all of one).
        cpu0, t0 = cpu_seconds(srv.proc.pid), time.monotonic()
        time.sleep(1.0)  # the measuring window, not a synchronisation
        wall = time.monotonic() - t0
        cpu = cpu_seconds(srv.proc.pid) - cpu0
        assert cpu < 0.25 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s while the reader stalled"
        # Then it reads on, slowly at first, and gets every byte.
        while got < BIG_SIZE:
            chunk = sock.recv(min(1 << 20, BIG_SIZE - got) if got > 4 << 20 else 4096)
            assert chunk, f"connection closed after {got} bytes"
            digest.update(chunk)
            got += len(chunk)
        assert digest.hexdigest() == facts["big_sha256"]
        # Keep-alive after a big static response.
        sock.sendall(b"GET /static/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_head(sock)
        while len(body) < len(HELLO):
            body += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ") and body == HELLO
    finally:
        sock.close()


def test_stalled_downloads_hold_no_thread(tree, facts):
    """With a single thread, three clients that stop reading a 50 MiB download do not hold
    it: the end of each file waits in its connection, and other static and app requests are
    answered meanwhile. Then each slow client gets every byte, and its connection carries
    the next request."""
    base, _ = tree
    srv = start(base, "--threads", "1")
    slow = []
    try:
        for _ in range(3):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.settimeout(TIMEOUT)
            sock.connect((srv.host, srv.port))
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 ")
            slow.append((sock, body))
        for i in range(5):
            t0 = time.monotonic()
            r = get(srv, "/static/hello.txt")
            assert r.status_code == 200 and r.content == HELLO
            r = get(srv, f"/other{i}")
            assert r.status_code == 200 and r.text.startswith(f"app /other{i} ")
            assert time.monotonic() - t0 < 2.0
        for sock, body in slow:
            digest, got = hashlib.sha256(body), len(body)
            while got < BIG_SIZE:
                chunk = sock.recv(min(1 << 20, BIG_SIZE - got))
                assert chunk, f"connection closed after {got} bytes"
                digest.update(chunk)
                got += len(chunk)
            assert digest.hexdigest() == facts["big_sha256"]
            sock.sendall(b"GET /static/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_head(sock)
            while len(body) < len(HELLO):
                body += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200 ") and body == HELLO
    finally:
        for sock, _ in slow:
            sock.close()
        srv.stop()


def test_a_parked_download_that_progresses_outlives_io_timeout(tree, facts):
    """`--io-timeout` bounds a wait without progress, not a whole download: a reader paced
    to take about 4 s over the parked end of a file gets all of it under `--io-timeout 1`."""
    base, _ = tree
    srv = start(base, "--threads", "1", "--io-timeout", "1")
    try:
        digest, seconds = paced_download(srv, 12 << 20)
        assert seconds > 3
        assert digest == facts["big_sha256"]
    finally:
        srv.stop()


def test_stalled_downloads_count_their_files_against_the_open_files_limit(tree):
    """A connection with the end of a file parked holds two descriptors, so under
    `ulimit -n 128` the default connection limit with static mounts is (128 - 32) / 2 = 48:
    60 stalled downloads never exhaust the file table. The 12 past the limit wait in the
    backlog and are answered once others leave."""
    base, _ = tree
    command = ["prlimit", "--nofile=128:128", "--", sys.executable, "-m", "ferrule"]
    srv = start(base, "--threads", "1", "--keep-alive", "30", command=command)
    socks = []
    try:
        for _ in range(60):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.settimeout(TIMEOUT)
            sock.connect((srv.host, srv.port))
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        for sock in socks[:48]:
            head, _ = read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 ")
        for sock in socks[48:]:
            sock.settimeout(0.05)
            with pytest.raises(TimeoutError):
                sock.recv(1)
            sock.settimeout(TIMEOUT)
        for sock in socks[:12]:
            sock.close()
        for sock in socks[48:]:
            head, _ = read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in socks:
            sock.close()
        srv.stop()
    assert "Too many open files" not in srv.log
    assert "48 connections open (max_connections)" in srv.log


def test_a_reader_that_stops_is_dropped_after_io_timeout(tree):
    base, _ = tree
    srv = start(base, "--io-timeout", "1")
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.settimeout(TIMEOUT)
        sock.connect((srv.host, srv.port))
        sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        read_head(sock)
        # Stop reading; the server gives up after about 1 s without progress. Other clients
        # are served meanwhile.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            assert get(srv, "/static/hello.txt").status_code == 200
        # Draining what the buffers hold then ends in EOF (or a reset), far short of 50 MiB.
        got = 0
        try:
            while chunk := sock.recv(1 << 20):
                got += len(chunk)
        except ConnectionResetError:
            pass
        assert got < BIG_SIZE // 2
        sock.close()
        assert get(srv, "/static/hello.txt").content == HELLO
    finally:
        srv.stop()


def test_keep_alive_and_pipelining_across_static_and_app(srv):
    with Client.to(srv, timeout=TIMEOUT) as c:
        etag = None
        for method, target, headers, status in [
            ("GET", "/static/hello.txt", [], 200),
            ("GET", "/other", [], 200),
            ("HEAD", "/static/hello.txt", [], 200),
            ("GET", "/static/missing", [], 404),
            ("POST", "/static/hello.txt", [], 405),
            ("GET", "/static/data.bin", [("Range", "bytes=0-9")], 206),
            ("GET", "/static/data.bin", [("Range", "bytes=99999-")], 416),
            ("GET", "/static/%zz", [], 400),
        ]:
            c.send(request(method, target, headers=headers))
            r = c.response(method)
            assert r.status == status, (method, target)
            assert r.header("Connection") is None
            if target == "/static/hello.txt" and method == "GET":
                etag = r.header("ETag")
        c.send(request("GET", "/static/hello.txt", headers=[("If-None-Match", etag)]))
        assert c.response().status == 304
        # Pipelined: three requests in one send, three responses in order.
        c.send(
            request("GET", "/static/hello.txt")
            + request("GET", "/pipelined")
            + request("GET", "/static/css/site.css")
        )
        a, b, d = c.response(), c.response(), c.response()
        assert (a.status, a.body) == (200, HELLO)
        assert b.body.startswith(b"app /pipelined ")
        assert d.body == b"body { color: red }\n"
        # A small request body is skipped: the connection goes on.
        c.send(request("GET", "/static/hello.txt", body=b"ignored body"))
        assert c.response().body == HELLO
        c.send(request("POST", "/static/hello.txt", body=b"x" * 1000))
        assert c.response().status == 405
        c.send(request("GET", "/static/hello.txt"))
        assert c.response().body == HELLO


def test_connection_close_and_http10(srv):
    with Client.to(srv, timeout=TIMEOUT) as c:
        c.send(request("GET", "/static/hello.txt", headers=[("Connection", "close")]))
        r = c.response()
        assert r.body == HELLO and r.has_token("Connection", "close")
        assert c.closed_within(5)
    with Client.to(srv, timeout=TIMEOUT) as c:
        c.send(request("GET", "/static/hello.txt", version="HTTP/1.0"))
        r = c.response()
        assert r.body == HELLO and r.has_token("Connection", "close")
        assert c.closed_within(5)
    with Client.to(srv, timeout=TIMEOUT) as c:
        c.send(
            request("GET", "/static/hello.txt", [("Connection", "keep-alive")], version="HTTP/1.0")
        )
        r = c.response()
        assert r.body == HELLO and r.has_token("Connection", "keep-alive")
        c.send(request("GET", "/static/hello.txt", version="HTTP/1.0"))
        assert c.response().body == HELLO


def test_a_chunked_body_is_not_read_and_the_connection_closes(srv):
    with Client.to(srv, timeout=TIMEOUT) as c:
        c.send(
            request("POST", "/static/hello.txt", headers=[("Transfer-Encoding", "chunked")])
            + b"5\r\nhello\r\n0\r\n\r\n"
        )
        r = c.response()
        assert r.status == 405 and r.has_token("Connection", "close")
        assert c.closed_within(5)


# --- access log ----------------------------------------------------------------------------


def test_static_responses_are_in_the_access_log(srv, tree):
    log = tree[0] / "access.log"
    etag = get(srv, "/static/hello.txt?access=1").headers["ETag"]
    get(srv, "/static/hello.txt?access=2", **{"If-None-Match": etag})
    get(srv, "/static/data.bin?access=3", Range="bytes=0-99")
    get(srv, "/static/nope?access=4")
    requests.head(srv.url + "/static/hello.txt?access=5", timeout=TIMEOUT)
    expected = [
        r'"GET /static/hello\.txt\?access=1 HTTP/1\.1" 200 13 ',
        r'"GET /static/hello\.txt\?access=2 HTTP/1\.1" 304 - ',
        r'"GET /static/data\.bin\?access=3 HTTP/1\.1" 206 100 ',
        r'"GET /static/nope\?access=4 HTTP/1\.1" 404 14 ',
        r'"HEAD /static/hello\.txt\?access=5 HTTP/1\.1" 200 - ',
    ]

    def found():
        text = log.read_text() if log.exists() else ""
        return all(re.search(rx, text) for rx in expected) and text

    text = wait_until(found, timeout=TIMEOUT, what="the static lines in the access log")
    for line in text.splitlines():
        if "access=" in line:
            assert line.startswith("127.0.0.1 - - ["), line


def test_response_header_atoms_see_static_headers(tree):
    base, _ = tree
    log = base / "atoms.log"
    srv = start(
        base,
        "--access-logfile",
        str(log),
        "--access-logformat",
        "%(s)s %(B)s ct=%({content-type}o)s cl=%({content-length}o)s e=%({PATH_INFO}e)s",
    )
    try:
        get(srv, "/static/css/site.css")
        line = wait_until(lambda: log.exists() and log.read_text().strip(), timeout=TIMEOUT)
        assert line == "200 20 ct=text/css; charset=utf-8 cl=20 e=-"
    finally:
        srv.stop()


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--static", "static"], "URL=DIR"),
        (["--static", "/static=/no/such/dir/ferrule"], "not a directory"),
        (["--static", "/=."], "'/' alone"),
        (["--static", "static=."], "start with '/'"),
        (["--static", "/a/../b=."], "segments"),
        (["--static-cache-control", "a\nb"], "control character"),
    ],
)
def test_bad_static_settings_exit_2(tmp_path, args, message):
    proc = run_ferrule(*args, "x:app", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "--static" in proc.stderr


def test_mounts_from_a_config_file_and_the_longest_prefix_wins(tree, tmp_path):
    base, _ = tree
    conf = tmp_path / "ferrule.toml"
    conf.write_text(
        f'static = ["/static={base / "public"}", "/static/sub={base / "private"}"]\n'
        'static_cache_control = "no-cache"\n'
    )
    srv = ServerProcess(
        ["--bind", "127.0.0.1:0", "-c", str(conf), "static_test_app:app"], base, ferrule_env()
    ).wait_ready()
    try:
        r = get(srv, "/static/sub/x.txt")  # from the nested mount's directory
        assert r.status_code == 200 and r.content == SECRET
        assert r.headers["Cache-Control"] == "no-cache"
        assert get(srv, "/static/sub/inner.txt").status_code == 404
        assert get(srv, "/static/hello.txt").content == HELLO
    finally:
        srv.stop()


def test_a_long_download_that_progresses_outlives_worker_timeout(tree, facts):
    """Under a master with --timeout 1, a 50 MiB download paced to take about 3 s is not a
    request stuck past worker_timeout: it keeps making progress."""
    base, _ = tree
    srv = start(base, "--master", "--workers", "1", "--timeout", "1", "--io-timeout", "10")
    try:
        digest, seconds = paced_download(srv, 17 << 20)
        assert seconds > 2
        assert digest == facts["big_sha256"]
        assert "Worker timeout" not in srv.log
    finally:
        srv.stop()
