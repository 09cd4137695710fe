"""Sockets and the service manager with worker processes: unix sockets with --umask, an fd
handed over by a parent, systemd socket activation (LISTEN_FDS) and sd_notify, --pid and
--reuse-port."""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys

import pytest
from conftest import children_of, get, get_unix, pid_of, run_ferrule

pytestmark = pytest.mark.timeout(60)

APP = "worker_app:app"

# Runs as the server's command: puts the socket given as argv[1] on fd 3 and sets LISTEN_PID
# to its own pid before exec'ing ferrule, as systemd does after its fork.
ACTIVATE = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "ferrule", *sys.argv[2:]])
"""


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.mark.parametrize("workers", ["1", "2"])
def test_unix_socket_with_umask(start_server, tmp_path, workers):
    path = tmp_path / "ferrule.sock"
    srv = start_server(
        "-w", workers, "--master", "-b", f"unix:{path}", "--umask", "007", APP, bind=False
    )
    srv.wait_for_log(rf"Ready: {workers} workers serving")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o770
    status, body = get_unix(str(path))
    assert status == 200 and pid_of(body) in children_of(srv.proc.pid)
    assert srv.stop() == 0
    assert not path.exists()  # removed by the master on exit


def test_stale_unix_socket_file_is_replaced_with_workers(start_server, tmp_path):
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed server leaves behind
    srv = start_server("-w", "2", "-b", f"unix:{path}", APP, bind=False)
    srv.wait_for_log(r"Ready: 2 workers serving")
    assert get_unix(str(path))[0] == 200


def test_fd_from_parent_with_workers(start_server):
    sock = listening_socket()
    host, port = sock.getsockname()
    try:
        srv = start_server(
            "-w", "2", "-b", f"fd://{sock.fileno()}", APP, bind=False, pass_fds=(sock.fileno(),)
        )
        srv.wait_for_log(r"Ready: 2 workers serving")
        status, body = get(host, port)
        assert status == 200 and pid_of(body) in children_of(srv.proc.pid)
        assert srv.stop() == 0
    finally:
        sock.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_socket_activation_and_notify(start_server, tmp_path, workers):
    sock = listening_socket()
    host, port = sock.getsockname()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    try:
        srv = start_server(
            "-w",
            workers,
            "-b",
            "127.0.0.1:1",  # ignored: systemd's socket wins
            APP,
            bind=False,
            command=[sys.executable, "-c", ACTIVATE, str(sock.fileno())],
            pass_fds=(sock.fileno(),),
            env={"NOTIFY_SOCKET": str(tmp_path / "notify")},
        )
        assert notify.recv(256) == b"READY=1"
        assert "LISTEN_FDS" in srv.log
        status, body = get(host, port)
        assert status == 200
        srv.signal(signal.SIGTERM)
        assert notify.recv(256) == b"STOPPING=1"
        assert srv.proc.wait(10) == 0
    finally:
        sock.close()
        notify.close()


def test_listen_fds_for_another_pid_are_ignored(start_server):
    srv = start_server(APP, env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    assert srv.port != 0 and get(srv.host, srv.port)[0] == 200
    assert "LISTEN_FDS" not in srv.log


def test_sd_notify_to_an_abstract_socket(start_server):
    name = f"ferrule-test-{os.getpid()}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("\0" + name)
    notify.settimeout(10)
    try:
        srv = start_server("-w", "2", APP, env={"NOTIFY_SOCKET": "@" + name})
        assert notify.recv(256) == b"READY=1"
        srv.signal(signal.SIGTERM)
        assert notify.recv(256) == b"STOPPING=1"
        assert srv.proc.wait(10) == 0
    finally:
        notify.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_pid_file_is_written_and_removed(start_server, tmp_path, workers):
    pidfile = tmp_path / "run" / "ferrule.pid"
    pidfile.parent.mkdir()
    srv = start_server("-w", workers, "--pid", str(pidfile), APP)
    assert int(pidfile.read_text()) == srv.proc.pid
    assert srv.stop() == 0
    assert not pidfile.exists()


def test_pid_file_of_a_running_process_refuses_to_start(tmp_path):
    pidfile = tmp_path / "ferrule.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # this test process is alive
    proc = run_ferrule("-w", "2", "--pid", str(pidfile), "-b", "127.0.0.1:0", APP, cwd=tmp_path)
    assert proc.returncode == 1
    assert "is still running" in proc.stderr
    assert pidfile.read_text() == f"{os.getpid()}\n"


def test_reuse_port_gives_each_worker_its_own_socket(start_server):
    srv = start_server("-w", "2", "--reuse-port", APP)
    srv.wait_for_log(r"Ready: 2 workers serving")
    workers = children_of(srv.proc.pid)

    def listening_inodes(pid: int) -> set[str]:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:"):
                inodes.add(target)
        return inodes

    with open("/proc/net/tcp", encoding="ascii") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    port_hex = f"{srv.port:04X}"
    listening = {f"socket:[{r[9]}]" for r in rows if r[1].endswith(port_hex) and r[3] == "0A"}
    assert len(listening) == 2  # one listening socket per worker, none in the master
    assert not listening & listening_inodes(srv.proc.pid)
    for pid in workers:
        assert len(listening & listening_inodes(pid)) == 1
    status, body = get(srv.host, srv.port)
    assert status == 200 and pid_of(body) in workers
    assert srv.stop() == 0
