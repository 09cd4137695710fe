"""Reloads: SIGHUP under load (no failed request, new code served after), and --reload.

The app is written to a temporary directory so the tests can change it; bytecode caching is
off because a file rewritten within the same second, at the same size, would otherwise be
loaded from a stale .pyc.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import Load, children_of, get, pid_of, wait_until

pytestmark = pytest.mark.timeout(90)

NO_PYC = {"PYTHONDONTWRITEBYTECODE": "1"}

APP_SOURCE = """\
import os

VERSION = {version!r}


def app(environ, start_response):
    body = f"{{VERSION}} pid={{os.getpid()}}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def write_app(directory, version: str) -> None:
    (directory / "reload_app.py").write_text(APP_SOURCE.format(version=version))


def version_of(srv) -> str:
    status, body = get(srv.host, srv.port)
    assert status == 200, body
    return body.split()[0]


@pytest.mark.parametrize("preload", [False, True], ids=["import-in-workers", "preload"])
def test_hup_under_load_fails_nothing_and_serves_the_new_code(start_server, tmp_path, preload):
    write_app(tmp_path, "one")
    args = ["-w", "2", "--threads", "4", *(["--preload"] if preload else []), "reload_app:app"]
    srv = start_server(*args, cwd=tmp_path, env=NO_PYC)
    srv.wait_for_log(r"Ready: 2 workers serving")
    old = children_of(srv.proc.pid)
    with Load(srv.host, srv.port, clients=4, total=4000, seconds=30) as load:
        wait_until(lambda: load.count >= 200, what="200 requests before the reload")
        write_app(tmp_path, "two")
        srv.signal(signal.SIGHUP)
        srv.wait_for_log("Reload done")
        wait_until(lambda: not (children_of(srv.proc.pid) & old), what="the old workers to exit")
        done = load.count
        wait_until(lambda: load.count >= done + 200, what="200 requests after the reload")
        load.stop()
    assert load.failures == []
    versions = {body.split()[0] for body in load.bodies}
    assert versions == {"one", "two"}
    new = children_of(srv.proc.pid)
    assert len(new) == 2 and not new & old
    for _ in range(20):
        status, body = get(srv.host, srv.port)
        assert body.startswith("two ") and pid_of(body) in new
    assert srv.stop() == 0


def test_hup_with_an_import_error_keeps_the_old_workers(start_server, tmp_path):
    write_app(tmp_path, "one")
    srv = start_server("-w", "2", "reload_app:app", cwd=tmp_path, env=NO_PYC)
    srv.wait_for_log(r"Ready: 2 workers serving")
    old = children_of(srv.proc.pid)
    (tmp_path / "reload_app.py").write_text("raise RuntimeError('broken on purpose')\n")
    srv.signal(signal.SIGHUP)
    srv.wait_for_log("Reload failed")
    assert "broken on purpose" in srv.log
    assert version_of(srv) == "one"
    wait_until(lambda: children_of(srv.proc.pid) == old, what="only the old workers")
    # Fixed, a second HUP works.
    write_app(tmp_path, "three")
    srv.signal(signal.SIGHUP)
    srv.wait_for_log("Reload done")
    wait_until(lambda: version_of(srv) == "three", what="the fixed code")
    assert srv.proc.poll() is None


def test_reload_serves_an_edited_file_within_2s(start_server, tmp_path):
    write_app(tmp_path, "one")
    srv = start_server("--reload", "reload_app:app", cwd=tmp_path, env=NO_PYC)
    srv.wait_for_log(r"Ready: 1 workers serving")
    assert version_of(srv) == "one"
    t0 = time.monotonic()
    write_app(tmp_path, "two")
    wait_until(lambda: version_of(srv) == "two", timeout=2.0, interval=0.05, what="new code")
    assert time.monotonic() - t0 < 2.0
    assert "reload_app.py changed" in srv.log


def test_reload_survives_a_syntax_error_then_picks_up_the_fix(start_server, tmp_path):
    write_app(tmp_path, "one")
    srv = start_server("--reload", "reload_app:app", cwd=tmp_path, env=NO_PYC)
    srv.wait_for_log(r"Ready: 1 workers serving")
    (tmp_path / "reload_app.py").write_text("def app(:\n")
    srv.wait_for_log("Reload failed")
    assert "SyntaxError" in srv.log
    assert version_of(srv) == "one"
    write_app(tmp_path, "fixed")
    wait_until(lambda: version_of(srv) == "fixed", timeout=5.0, interval=0.05, what="the fix")


def test_reload_extra_file(start_server, tmp_path):
    (tmp_path / "version.txt").write_text("first")
    (tmp_path / "reload_app.py").write_text(
        APP_SOURCE.format(version="x").replace("'x'", "open('version.txt').read()")
    )
    srv = start_server(
        "--reload", "--reload-extra-file", "version.txt", "reload_app:app", cwd=tmp_path, env=NO_PYC
    )
    srv.wait_for_log(r"Ready: 1 workers serving")
    assert version_of(srv) == "first"
    (tmp_path / "version.txt").write_text("second")
    wait_until(lambda: version_of(srv) == "second", timeout=5.0, interval=0.05, what="reload")


def test_reload_sees_an_editor_save_that_keeps_size_and_mtime(start_server, tmp_path):
    """A rename-over save with the old size and times is invisible to stat() polling.

    inotify on the directory reports the rename; and the master still runs no thread.
    """
    write_app(tmp_path, "one")
    path = tmp_path / "reload_app.py"
    srv = start_server("--reload", "reload_app:app", cwd=tmp_path, env=NO_PYC)
    srv.wait_for_log(r"Ready: 1 workers serving")
    assert version_of(srv) == "one"
    before = path.stat()
    swap = tmp_path / ".reload_app.py.swp"
    swap.write_text(APP_SOURCE.format(version="owt"))  # same length as "one"
    os.utime(swap, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(swap, path)
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    wait_until(lambda: version_of(srv) == "owt", timeout=2.0, interval=0.05, what="new code")
    # The watch is on the directory: it survives the rename, so a second save is seen too.
    write_app(tmp_path, "two")
    wait_until(lambda: version_of(srv) == "two", timeout=2.0, interval=0.05, what="new code")
    assert len(os.listdir(f"/proc/{srv.proc.pid}/task")) == 1, "the master started a thread"
