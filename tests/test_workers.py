"""The master and its worker processes: real processes, real signals, loopback only.

Stops (TERM graceful, INT fast), a worker killed with SIGKILL, a worker stuck past
--timeout, TTIN/TTOU, --max-requests recycling, and workers that fail to boot.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import (
    APPS,
    Load,
    children_of,
    ferrule_env,
    get,
    pid_of,
    run_ferrule,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

APP = "worker_app:app"


def start_master(start_server, *args: str, workers: int = 2, **kwargs):
    """Start `ferrule -w N ... worker_app:app` and wait until every worker serves."""
    srv = start_server("-w", str(workers), *args, APP, **kwargs)
    srv.wait_for_log(r"Ready: \d+ workers serving")
    return srv


def workers_of(srv) -> set[int]:
    return children_of(srv.proc.pid)


def wait_in_app(srv, count: int) -> None:
    srv.wait_for_log(r"(?s)" + r"worker_app: request started.*" * count)


def test_workers_share_the_listening_socket(start_server):
    srv = start_master(start_server, "--threads", "1")
    pids = wait_until(lambda: len(workers_of(srv)) == 2 and workers_of(srv), what="2 workers")
    assert srv.proc.pid not in pids
    seen: set[int] = set()
    with ThreadPoolExecutor(4) as pool:
        for _ in range(50):  # one app thread per worker: concurrent requests spread out
            for status, body in pool.map(lambda _: get(srv.host, srv.port, "/?0.05"), range(4)):
                assert status == 200
                assert "multiprocess=True" in body
                seen.add(pid_of(body))
            if seen == pids:
                break
    assert seen == pids


def test_term_lets_running_requests_finish_then_exits_0(start_server):
    srv = start_master(start_server, "--threads", "2")
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(get, srv.host, srv.port, "/?1") for _ in range(4)]
        wait_in_app(srv, 4)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        results = [f.result() for f in running]
    assert [status for status, _ in results] == [200] * 4
    assert srv.proc.wait(15) == 0
    assert time.monotonic() - t0 >= 0.5  # it did wait for them
    assert "Graceful stop" in srv.log
    assert "Traceback" not in srv.log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_int_and_quit_stop_at_once(start_server, sig):
    srv = start_master(start_server, "--graceful-timeout", "30")
    pids = workers_of(srv)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(get, srv.host, srv.port, "/?20")
        wait_in_app(srv, 1)
        t0 = time.monotonic()
        srv.signal(sig)
        assert srv.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5.0
        with pytest.raises(OSError):
            running.result()
    assert "Fast stop" in srv.log
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)  # reaped by the master


def test_second_term_turns_a_graceful_stop_into_a_fast_one(start_server):
    srv = start_master(start_server, "--graceful-timeout", "30")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(get, srv.host, srv.port, "/?20")
        wait_in_app(srv, 1)
        srv.signal(signal.SIGTERM)
        srv.wait_for_log("Graceful stop")
        assert srv.proc.poll() is None
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5.0
        with pytest.raises(OSError):
            running.result()


def test_killed_worker_is_replaced_and_serving_within_1s(start_server):
    srv = start_master(start_server, "--master", workers=1)
    (old,) = wait_until(lambda: workers_of(srv), what="the worker")
    assert pid_of(get(srv.host, srv.port)[1]) == old
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    # Sent right away: the connection waits in the listen queue for the replacement.
    status, body = get(srv.host, srv.port)
    elapsed = time.monotonic() - t0
    assert status == 200
    assert pid_of(body) != old
    assert elapsed < 1.0, f"the replacement took {elapsed:.2f} s"
    srv.wait_for_log(rf"Worker {old} died \(killed by SIGKILL\)")


def test_killing_one_worker_does_not_fail_requests_to_the_others(start_server):
    srv = start_master(start_server, "--threads", "2")
    pids = wait_until(lambda: len(workers_of(srv)) == 2 and workers_of(srv), what="2 workers")
    # A keep-alive connection held by one worker keeps working while the other one dies.
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    conn.request("GET", "/")
    resp = conn.getresponse()
    survivor = pid_of(resp.read().decode())
    (victim,) = pids - {survivor}
    before = [get(srv.host, srv.port)[0] for _ in range(20)]
    os.kill(victim, signal.SIGKILL)
    after = [get(srv.host, srv.port)[0] for _ in range(50)]
    for _ in range(20):
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        assert pid_of(resp.read().decode()) == survivor
    conn.close()
    assert before == [200] * 20
    assert after == [200] * 50
    now = wait_until(lambda: len(workers_of(srv)) == 2 and workers_of(srv), what="replacement")
    assert victim not in now and survivor in now


def test_stuck_request_past_timeout_is_killed_and_named(start_server):
    srv = start_master(start_server, "--master", "--timeout", "1", workers=1)
    (old,) = wait_until(lambda: workers_of(srv), what="the worker")
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(get, srv.host, srv.port, "/stuck?60")
        wait_in_app(srv, 1)
        m = srv.wait_for_log(r"Worker timeout \(pid (\d+)\): request '([^']*)' running", 10)
        assert int(m.group(1)) == old
        assert m.group(2) == "GET /stuck?60 HTTP/1.1"
        with pytest.raises(OSError):
            stuck.result(timeout=10)
    # A replacement serves; the killed worker printed where its threads were (faulthandler).
    status, body = get(srv.host, srv.port)
    assert status == 200 and pid_of(body) != old
    srv.wait_for_log(r"in app")  # the frame of worker_app.app in the traceback dump
    srv.wait_for_log(rf"Worker {old} is gone")


@pytest.mark.parametrize("path", ["/drip", "/drip-write"])
def test_a_stream_that_keeps_going_is_not_stuck_past_timeout(start_server, path):
    """A response the app streams for longer than --timeout, a block at a time (yielded, or
    passed to `write()` inside one call of the app), is work making progress, not a stuck
    request: the worker is not killed and the body is whole."""
    srv = start_master(start_server, "--master", "--timeout", "1", workers=1)
    (pid,) = wait_until(lambda: workers_of(srv), what="the worker")
    status, body = get(srv.host, srv.port, f"{path}?3", timeout=15)
    assert status == 200
    assert body.count("drop\n") >= 20 and body.endswith(f"pid={pid}")
    assert "Worker timeout" not in srv.log
    assert workers_of(srv) == {pid}


def test_frozen_worker_without_heartbeat_is_replaced(start_server):
    srv = start_master(start_server, "--master", "--timeout", "1", workers=1)
    (old,) = wait_until(lambda: workers_of(srv), what="the worker")
    os.kill(old, signal.SIGSTOP)  # no request running: only the heartbeat can tell
    try:
        srv.wait_for_log(rf"Worker timeout \(pid {old}\): no heartbeat for", 10)
        new = wait_until(lambda: workers_of(srv) - {old}, what="a replacement")
        assert get(srv.host, srv.port)[0] == 200
        wait_until(lambda: old not in workers_of(srv), what="the frozen worker to be killed")
        assert new
    finally:
        if os.path.exists(f"/proc/{old}"):
            os.kill(old, signal.SIGCONT)


def test_ttin_and_ttou_change_the_number_of_workers(start_server):
    srv = start_master(start_server)
    wait_until(lambda: len(workers_of(srv)) == 2, what="2 workers")
    srv.signal(signal.SIGTTIN)
    three = wait_until(lambda: len(workers_of(srv)) == 3 and workers_of(srv), what="3 workers")
    srv.signal(signal.SIGTTOU)  # one at a time: the kernel merges a signal that is pending
    srv.wait_for_log("SIGTTOU: 2 workers")
    srv.signal(signal.SIGTTOU)
    one = wait_until(lambda: len(workers_of(srv)) == 1 and workers_of(srv), what="1 worker")
    assert one < three
    srv.signal(signal.SIGTTOU)  # never below one
    srv.wait_for_log(r"(?s)(SIGTTOU: 1 workers.*){2}")
    assert workers_of(srv) == one
    assert get(srv.host, srv.port)[0] == 200


def test_max_requests_recycles_workers_without_a_failed_request(start_server):
    srv = start_master(
        start_server, "--max-requests", "100", "--max-requests-jitter", "10", "--threads", "4"
    )
    with Load(srv.host, srv.port, clients=4, total=1000, seconds=60) as load:
        load.wait()
    assert load.failures == []
    assert len(load.bodies) == 1000
    pids = {pid_of(b) for b in load.bodies}
    assert len(pids) >= 8, pids  # 2 workers, each replaced after 100-110 requests
    assert srv.log.count("exited by itself (max_requests)") >= 6
    assert srv.stop() == 0


def test_app_import_error_stops_the_master_with_the_traceback(tmp_path):
    t0 = time.monotonic()
    proc = run_ferrule("-w", "2", "-b", "127.0.0.1:0", "cli_import_error:application", cwd=tmp_path)
    assert time.monotonic() - t0 < 5.0
    assert proc.returncode == 4
    assert "Traceback" in proc.stderr
    assert "ferrule_tests_no_such_dependency" in proc.stderr
    assert "could not be loaded" in proc.stderr
    assert proc.stderr.count("Booting worker") <= 2  # no respawn loop


def test_app_import_error_with_preload_fails_before_forking(tmp_path):
    proc = run_ferrule(
        "-w", "2", "--preload", "-b", "127.0.0.1:0", "cli_import_error:application", cwd=tmp_path
    )
    assert proc.returncode == 4
    assert "ferrule_tests_no_such_dependency" in proc.stderr
    assert "Booting worker" not in proc.stderr


def test_worker_dying_while_booting_stops_the_master_with_3(tmp_path):
    t0 = time.monotonic()
    proc = run_ferrule("-w", "2", "-b", "127.0.0.1:0", "worker_boot_exit:app", cwd=tmp_path)
    assert time.monotonic() - t0 < 5.0
    assert proc.returncode == 3
    assert "failed to boot (exit code 7)" in proc.stderr
    assert proc.stderr.count("Booting worker") <= 2


def test_web_concurrency_sets_the_default_number_of_workers(start_server):
    srv = start_server(APP, env={"WEB_CONCURRENCY": "3"})
    srv.wait_for_log(r"Ready: 3 workers serving")
    assert len(workers_of(srv)) == 3


def test_bad_web_concurrency_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ferrule", APP],
        cwd=str(tmp_path),
        env=ferrule_env({"WEB_CONCURRENCY": "many"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "WEB_CONCURRENCY" in proc.stderr


def test_one_worker_without_master_features_runs_in_one_process(start_server):
    srv = start_server(APP)
    status, body = get(srv.host, srv.port)
    assert status == 200 and pid_of(body) == srv.proc.pid
    assert "multiprocess=False" in body


def test_single_process_ignores_hup_and_keeps_serving(start_server):
    srv = start_server(APP)
    srv.signal(signal.SIGHUP)
    srv.wait_for_log("SIGHUP ignored")
    assert get(srv.host, srv.port)[0] == 200
    assert srv.stop() == 0


def test_serve_with_workers_from_a_script(start_server):
    srv = start_server(
        "127.0.0.1:0",
        bind=False,
        command=[sys.executable, str(APPS / "worker_serve_script.py")],
    )
    srv.wait_for_log(r"Ready: 2 workers serving")
    assert len(workers_of(srv)) == 2
    status, body = get(srv.host, srv.port)
    assert status == 200 and pid_of(body) in workers_of(srv)
    assert srv.stop() == 0


def test_term_while_workers_boot_stops_promptly(start_server):
    # A TERM that reaches a worker between its fork and its own handlers must not be lost.
    for _ in range(5):
        srv = start_server("-w", "2", APP)  # returns on "Listening at", before the workers serve
        srv.signal(signal.SIGTERM)
        assert srv.proc.wait(10) == 0


def test_usr1_makes_every_worker_reopen_its_log_files(start_server, tmp_path):
    logfile = tmp_path / "app.log"
    srv = start_server("-w", "2", "worker_filelog:app", env={"WORKER_LOG": str(logfile)})
    srv.wait_for_log(r"Ready: 2 workers serving")
    pids = workers_of(srv)
    wait_until(lambda: get(srv.host, srv.port)[0] == 200 and logfile.exists(), what="a log line")
    os.rename(logfile, tmp_path / "app.log.1")  # what logrotate does
    srv.signal(signal.SIGUSR1)

    def both_reopened() -> bool:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: get(srv.host, srv.port), range(8)))
        if not logfile.exists():
            return False
        writers = {int(line.split()[0]) for line in logfile.read_text().splitlines()}
        return writers == pids

    wait_until(both_reopened, timeout=10, interval=0.1, what="both workers writing the new file")
