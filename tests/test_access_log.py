"""The access log (issue 7): gunicorn's atoms, formatted and written by the Rust core.

Lines go to `--access-logfile` without a Python call per request, and to the
`ferrule.access` logger only when it has a handler of the user's. Refused requests are
logged with their status; client values are escaped; SIGUSR1 reopens the file; workers
sharing one file never interleave lines.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import socket

import pytest
import requests
from conftest import Load, run_ferrule, wait_until

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10
CLF_TIME = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"


def lines(path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path, count: int) -> list[str]:
    return wait_until(lambda: len(lines(path)) >= count and lines(path), what=f"{count} lines")


def test_default_format_is_gunicorns(start_server, tmp_path):
    log = tmp_path / "access.log"
    srv = start_server("--access-logfile", str(log), "access_app:app")
    r = requests.get(
        srv.url + "/a%20b?x=1",
        headers={"Referer": "http://ref/", "User-Agent": "probe/1"},
        auth=("alice", "secret"),
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    (line,) = wait_lines(log, 1)
    assert re.fullmatch(
        rf'127\.0\.0\.1 - alice {CLF_TIME} "GET /a%20b\?x=1 HTTP/1\.1" 200 5 '
        r'"http://ref/" "probe/1"',
        line,
    ), line


def test_every_atom(start_server, tmp_path):
    log = tmp_path / "access.log"
    fmt = (
        "h=%(h)s l=%(l)s u=%(u)s r=%(r)s m=%(m)s U=%(U)s q=%(q)s H=%(H)s s=%(s)s B=%(B)s "
        "b=%(b)s f=%(f)s a=%(a)s T=%(T)s M=%(M)s D=%(D)s L=%(L)s p=%(p)s "
        "i=%({X-Req}i)s o=%({x-resp}o)s e=%({wsgi.url_scheme}e)s %(t)s 100%%"
    )
    srv = start_server("--access-logfile", str(log), "--access-logformat", fmt, "access_app:app")
    requests.get(srv.url + "/p%C3%A9?q", headers={"X-Req": "one", "X-Size": "0"}, timeout=5)
    (line,) = wait_lines(log, 1)
    head, _, tail = line.partition(" T=")
    assert head == (
        "h=127.0.0.1 l=- u=- r=GET /p%C3%A9?q HTTP/1.1 m=GET U=/p\\xc3\\xa9 q=q H=HTTP/1.1 "
        "s=200 B=0 b=- f=- a=python-requests/" + requests.__version__
    )
    m = re.fullmatch(
        r"(\d+) M=(\d+) D=(\d+) L=(\d+)\.(\d{6}) p=<(\d+)> i=one "
        rf'o=quoted \\"value\\" e=http {CLF_TIME} 100%',
        tail,
    )
    assert m, tail
    assert int(m[6]) == srv.proc.pid
    assert int(m[3]) < 5_000_000 and int(m[1]) == int(m[3]) // 1_000_000


@pytest.mark.parametrize(
    ("tz", "offset"), [("UTC0", "+0000"), ("XYZ7", "-0700"), ("IST-5:30", "+0530")]
)
def test_time_is_local_with_its_offset_like_gunicorn(start_server, tmp_path, tz, offset):
    """`%(t)s` is the server's local time (the TZ environment variable) with its UTC offset,
    as gunicorn's `time.strftime('[%d/%b/%Y:%H:%M:%S %z]')` writes it."""
    log = tmp_path / "access.log"
    srv = start_server("--access-logfile", str(log), "access_app:app", env={"TZ": tz})
    before = datetime.datetime.now(datetime.timezone.utc)
    requests.get(srv.url + "/", timeout=TIMEOUT)
    after = datetime.datetime.now(datetime.timezone.utc)
    (line,) = wait_lines(log, 1)
    m = re.search(CLF_TIME, line)
    assert m, line
    logged = datetime.datetime.strptime(m[0], "[%d/%b/%Y:%H:%M:%S %z]")
    assert m[0].endswith(f" {offset}]")
    assert before.replace(microsecond=0) <= logged <= after


def test_refused_requests_are_logged_with_their_status(start_server, tmp_path):
    log = tmp_path / "access.log"
    srv = start_server("--access-logfile", str(log), "access_app:app")
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    (line,) = wait_lines(log, 1)
    assert re.fullmatch(rf'127\.0\.0\.1 - - {CLF_TIME} "-" 400 - "-" "-"', line), line


def test_client_values_cannot_forge_lines(start_server, tmp_path):
    log = tmp_path / "access.log"
    srv = start_server("--access-logfile", str(log), "access_app:app")
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        s.sendall(
            b'GET /"x\\y HTTP/1.1\r\nHost: x\r\n'
            b'User-Agent: ua" 200 "\xff\r\nConnection: close\r\n\r\n'
        )
        while s.recv(4096):
            pass
    (line,) = wait_lines(log, 1)
    assert line.endswith(r'"GET /\"x\\y HTTP/1.1" 200 5 "-" "ua\" 200 \"\xff"'), line


def test_no_python_call_per_request_without_a_python_handler(start_server, tmp_path):
    log = tmp_path / "access.log"
    srv = start_server("--access-logfile", str(log), "access_app:app")
    for _ in range(20):
        requests.get(srv.url + "/", timeout=TIMEOUT)
    assert requests.get(srv.url + "/calls", timeout=TIMEOUT).text == "0"
    wait_lines(log, 21)


def test_a_python_handler_of_the_users_gets_the_lines(start_server, tmp_path):
    pylog = tmp_path / "python.log"
    srv = start_server("access_app:app", env={"ACCESS_APP_HANDLER": str(pylog)})
    for _ in range(3):
        requests.get(srv.url + "/", timeout=TIMEOUT)
    assert requests.get(srv.url + "/calls", timeout=TIMEOUT).text == "3"
    got = wait_lines(pylog, 4)  # and the /calls request
    assert all(
        re.match(rf'py: 127\.0\.0\.1 - - {CLF_TIME} "GET / HTTP/1\.1" 200 5', x) for x in got[:3]
    )
    # The same with a file as well: both destinations get every line.
    log = tmp_path / "access.log"
    srv2 = start_server(
        "--access-logfile", str(log), "access_app:app", env={"ACCESS_APP_HANDLER": str(pylog)}
    )
    requests.get(srv2.url + "/both", timeout=TIMEOUT)
    assert '"GET /both HTTP/1.1" 200' in wait_lines(log, 1)[0]
    wait_until(lambda: "/both" in pylog.read_text(), what="the Python handler's line")


def test_usr1_reopens_the_file(start_server, tmp_path):
    log = tmp_path / "access.log"
    srv = start_server("--access-logfile", str(log), "access_app:app")
    requests.get(srv.url + "/before", timeout=TIMEOUT)
    wait_lines(log, 1)
    os.rename(log, tmp_path / "access.log.1")
    srv.signal(signal.SIGUSR1)
    wait_until(log.exists, what="the reopened file")
    requests.get(srv.url + "/after", timeout=TIMEOUT)
    (line,) = wait_lines(log, 1)
    assert "/after" in line
    assert "/before" in (tmp_path / "access.log.1").read_text()


def test_workers_sharing_a_file_never_interleave(start_server, tmp_path):
    log = tmp_path / "access.log"
    srv = start_server("-w", "2", "--access-logfile", str(log), "access_app:app")
    srv.wait_for_log(r"Ready: 2 workers serving")
    with Load(srv.host, srv.port, clients=4, total=2000, seconds=30) as load:
        load.wait()
    assert load.failures == []
    got = wait_lines(log, 2000)
    assert len(got) == 2000
    pattern = re.compile(rf'127\.0\.0\.1 - - {CLF_TIME} "GET /\S* HTTP/1\.1" 200 5 "-" "[^"]*"')
    assert all(pattern.fullmatch(x) for x in got), [x for x in got if not pattern.fullmatch(x)][:3]


def test_access_log_flag_is_stdout(start_server):
    srv = start_server("--access-log", "access_app:app")
    requests.get(srv.url + "/to-stdout", timeout=TIMEOUT)
    srv.wait_for_log(rf'127\.0\.0\.1 - - {CLF_TIME} "GET /to-stdout HTTP/1\.1" 200 5')


def test_a_bad_format_is_a_usage_error(tmp_path):
    proc = run_ferrule("--access-logformat", "%(zz)s", "access_app:app", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--access-logformat" in proc.stderr and "unknown atom %(zz)s" in proc.stderr
