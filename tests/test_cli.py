"""The `ferrule` command: usage errors (exit 2), sockets, signals, logging and serve().

Usage-error tests run `python -m ferrule` to completion and need no Rust core; the others
start the real server and talk to it over real sockets.
"""

from __future__ import annotations

import logging
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from conftest import APPS, ferrule_env, run_ferrule
from ferrule import cli, settings
from ferrule.logs import ErrorStream

TIMEOUT = 10
LOG_LINE = r"\[[^\]]+\] \[\d+\] \[INFO\] "


class Process:
    """A subprocess whose merged output is read line by line (for launches the
    `start_server` fixture cannot make: a script calling serve(), or inherited fds)."""

    def __init__(self, cmd: list[str], cwd: Path, pass_fds: tuple[int, ...] = ()):
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(cwd),
            env=ferrule_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=pass_fds,
        )
        self.output = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.output)
            if m:
                return m
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no output matching {pattern!r}:\n{self.output}")
            self.output += line

    def finish(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        while (line := self._lines.get(timeout=timeout)) is not None:
            self.output += line
        return code


# --- usage errors: exit code 2 and a message naming the option ------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--no-such-flag", "cli_hello:app"], "--no-such-flag"),
        (["--worker-class", "gevent", "cli_hello:app"], "--worker-class"),
        (["--threads", "abc", "cli_hello:app"], "--threads"),
        (["--threads", "0", "cli_hello:app"], "--threads"),
        (["--threads", "cli_hello:app"], "--threads"),
        (["--keep-alive", "soon", "cli_hello:app"], "--keep-alive"),
        (["--header-timeout", "0", "cli_hello:app"], "--header-timeout"),
        (["--log-level", "loud", "cli_hello:app"], "--log-level"),
        (["--bind", "1.2.3.4:99999", "cli_hello:app"], "--bind"),
        (["--bind", "::1:80", "cli_hello:app"], "--bind"),
        (["--port", "http", "cli_hello:app"], "--port"),
        (["--limit-request-line", "70000", "cli_hello:app"], "--limit-request-line"),
        (["--limit-request-body", "-5", "cli_hello:app"], "--limit-request-body"),
        (["--root-path", "api", "cli_hello:app"], "--root-path"),
        (["--chdir", "/nonexistent/ferrule", "cli_hello:app"], "--chdir"),
        (["--bind", "127.0.0.1:0", "--port", "1", "cli_hello:app"], "--bind"),
        (["--thread", "4", "cli_hello:app"], "--thread"),  # no abbreviations
        (["cli_hello:create_app(__import__('os'))"], "TARGET"),
        (["cli_hello:app", "extra"], "extra"),
    ],
)
def test_bad_option_exits_2_naming_it(tmp_path, args, named):
    proc = run_ferrule(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("ferrule: error:")
    assert named in error


def test_missing_target_exits_2(tmp_path):
    proc = run_ferrule(cwd=tmp_path)
    assert proc.returncode == 2
    assert "TARGET" in proc.stderr


@pytest.mark.parametrize(
    ("name", "text", "named"),
    [
        ("bad.toml", 'app = "cli_hello:app"\nworker_class = "gevent"\n', "'worker_class'"),
        ("bad.yaml", "app: cli_hello:app\nconcurrency: 5\nspeed: fast\n", "'speed'"),
        ("bad.toml", 'app = "cli_hello:app"\nthreads = "lots"\n', "'threads'"),
        ("bad.yml", "app-module: wsgi\nconcurrency: 0\n", "'concurrency'"),
        ("bad.toml", "app = [1, 2]\n", "'app'"),
        ("bad.toml", 'app = "x"\nbind = "a:1"\nport = 2\n', "'bind'"),
    ],
)
def test_bad_config_file_exits_2_naming_key_and_file(tmp_path, name, text, named):
    (tmp_path / name).write_text(text)
    proc = run_ferrule("-c", name, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert name in error
    assert named in error


def test_missing_config_file_exits_2(tmp_path):
    proc = run_ferrule("-c", "nowhere.toml", "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 2
    assert "nowhere.toml" in proc.stderr


def test_config_without_target_exits_2(tmp_path):
    (tmp_path / "c.toml").write_text("threads = 2\n")
    proc = run_ferrule("-c", "c.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no application given" in proc.stderr


def test_help_lists_every_setting(tmp_path):
    proc = run_ferrule("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for s in settings.SETTINGS:
        if s.flags:
            assert s.flags[-1] in proc.stdout, s.name
    assert "--no-access-log" in proc.stdout


def test_version(tmp_path):
    proc = run_ferrule("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("ferrule ")


def test_parse_in_process():
    inv = cli.parse(["-b", "[::1]:0", "-b", "unix:/tmp/f.sock", "--no-access-log", "m:app"])
    assert inv.settings.bind == ("[::1]:0", "unix:/tmp/f.sock")
    assert inv.settings.access_log is False
    assert inv.settings.wsgi_app == "m:app"
    with pytest.raises(SystemExit) as info:
        cli.parse(["--threads", "-2", "m:app"])
    assert info.value.code == 2


# --- the wsgi.errors stream ----------------------------------------------------------------


def test_error_stream_logs_whole_lines(caplog):
    stream = ErrorStream()
    with caplog.at_level(logging.ERROR, logger="ferrule.error"):
        assert stream.write("partial ") == len("partial ")
        assert caplog.messages == []
        stream.write("line\nsecond line\r\n\nthird")
        assert caplog.messages == ["partial line", "second line"]
        stream.flush()
        stream.writelines(["four\n", "five\n"])
        stream.flush()
    assert caplog.messages == ["partial line", "second line", "third", "four", "five"]
    assert {r.name for r in caplog.records} == {"ferrule.error"}
    assert {r.levelno for r in caplog.records} == {logging.ERROR}


def test_error_stream_buffers_per_thread(caplog):
    stream = ErrorStream()
    first_half_written = threading.Event()

    def other_thread():
        first_half_written.wait(TIMEOUT)
        stream.write("other thread line\n")

    worker = threading.Thread(target=other_thread)
    with caplog.at_level(logging.ERROR, logger="ferrule.error"):
        worker.start()
        stream.write("main ")
        first_half_written.set()
        worker.join(TIMEOUT)
        stream.write("thread line\n")
    assert caplog.messages == ["other thread line", "main thread line"]


def test_error_stream_rejects_bytes():
    with pytest.raises(TypeError):
        ErrorStream().write(b"bytes")  # type: ignore[arg-type]


# --- serving: listening sockets, logs, signals --------------------------------------------


def test_listening_log_line_and_request(start_server):
    srv = start_server("cli_hello:app")
    assert re.match(r"http://127\.0\.0\.1:\d+$", srv.url) and srv.port != 0
    assert re.search(LOG_LINE + r"Listening at: http://127\.0\.0\.1:\d+$", srv.log, re.M)
    srv.wait_for_log("(?m)" + LOG_LINE + r"Using 8 threads$")
    assert requests.get(srv.url, timeout=TIMEOUT).text == "hello from app"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_server_with_exit_0(start_server, sig):
    srv = start_server("cli_hello:app")
    assert requests.get(srv.url, timeout=TIMEOUT).status_code == 200
    srv.signal(sig)
    srv.proc.wait(TIMEOUT)
    assert srv.stop() == 0
    assert "Shutting down" in srv.log
    assert "Traceback" not in srv.log
    assert "KeyboardInterrupt" not in srv.log


def test_ipv6_bind(start_server):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not available")
    srv = start_server("--bind", "[::1]:0", "cli_hello:app", bind=False)
    assert re.match(r"http://\[::1\]:\d+$", srv.url)
    assert requests.get(srv.url, timeout=TIMEOUT).text == "hello from app"


def unix_get(path: str, target: str = "/") -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_unix_socket_and_tcp_together(start_server, tmp_path):
    path = tmp_path / "f.sock"
    srv = start_server("--bind", f"unix:{path}", "cli_hello:app")  # plus the fixture's TCP bind
    srv.wait_for_log(rf"Listening at: unix:{re.escape(str(path))}$")
    response = unix_get(str(path))
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"hello from app")
    assert requests.get(srv.url, timeout=TIMEOUT).text == "hello from app"
    assert srv.stop() == 0
    assert not path.exists()  # the server removes its socket file


def test_stale_unix_socket_is_replaced(start_server, tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # the file stays behind, nobody listens
    srv = start_server("--bind", f"unix:{path}", "cli_hello:app", bind=False)
    assert unix_get(str(path)).endswith(b"hello from app")
    srv.stop()


def test_unix_path_that_is_not_a_socket_exits_1(tmp_path):
    (tmp_path / "regular").write_text("keep me")
    proc = run_ferrule("--bind", "unix:regular", "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 1
    assert "not a socket" in proc.stderr
    assert (tmp_path / "regular").read_text() == "keep me"


def test_address_in_use_exits_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_ferrule("--bind", f"127.0.0.1:{port}", "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}" in proc.stderr


def test_inherited_fd(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    cmd = [sys.executable, "-m", "ferrule", "--bind", f"fd://{fd}", "cli_hello:app"]
    proc = Process(cmd, tmp_path, pass_fds=(fd,))
    listener.close()
    try:
        proc.wait_for(rf"(?m)Listening at: http://127\.0\.0\.1:{port}$|^ferrule: error")
        assert "Listening at" in proc.output, proc.output
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
        assert r.text == "hello from app"
    finally:
        assert proc.finish() == 0, proc.output


def test_fd_that_is_not_listening_exits_1(tmp_path):
    proc = run_ferrule("--bind", "fd://0", "cli_hello:app", cwd=tmp_path)  # stdin: /dev/null
    assert proc.returncode == 1
    assert "fd://0" in proc.stderr


def test_serve_from_a_script(tmp_path):
    script = APPS / "cli_serve_script.py"
    proc = Process([sys.executable, str(script)], tmp_path)
    try:
        url = proc.wait_for(r"Listening at: (http://127\.0\.0\.1:\d+)").group(1)
        proc.wait_for(r"Using 3 threads")
        assert requests.get(url, timeout=TIMEOUT).text == "served by ferrule.serve()"
    finally:
        code = proc.finish(signal.SIGINT)
    assert code == 0, proc.output
    assert "serve() returned" in proc.output
    assert "Traceback" not in proc.output


def test_wsgi_errors_go_to_the_error_log(start_server):
    srv = start_server("cli_hello:echo_environ")
    assert requests.get(srv.url + "/?complain", timeout=TIMEOUT).status_code == 200
    srv.wait_for_log(r"\[ERROR\] cli_hello complaint: something looks wrong")


def test_access_log(start_server):
    srv = start_server("--access-log", "--log-level", "info", "cli_hello:app")
    requests.get(srv.url + "/access-log-probe", timeout=TIMEOUT)
    srv.wait_for_log(r"/access-log-probe")


def test_root_path_is_script_name(start_server):
    srv = start_server("--root-path", "/api/", "cli_hello:echo_environ")
    environ = requests.get(srv.url + "/api/items", timeout=TIMEOUT).json()
    assert environ["SCRIPT_NAME"] == "/api"
    assert environ["wsgi.multiprocess"] is False
