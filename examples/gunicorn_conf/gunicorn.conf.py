"""A gunicorn config file with every server hook, run unchanged by ferrule (or by gunicorn).

From this directory::

    ferrule -c gunicorn.conf.py          # or: gunicorn -c gunicorn.conf.py
    curl http://127.0.0.1:8000/hello?name=you

Each hook logs a line through the server's logger and, when the environment variable
HOOK_LOG names a file, appends one JSON line to it with what the hook received (the tests use
that to check that every hook fires, where, and with which arguments).
"""

import json
import multiprocessing
import os
import time

# --- settings gunicorn and ferrule share --------------------------------------------------
wsgi_app = "app:app"
bind = "127.0.0.1:8000"
workers = min(2, multiprocessing.cpu_count() * 2 + 1)
threads = 4
timeout = 30
graceful_timeout = 10
keepalive = 5
max_requests = 10000
max_requests_jitter = 100
loglevel = "info"
errorlog = "-"
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
preload_app = False
raw_env = ["GREETING=Hello", "APP_MODE=example"]

# A gunicorn setting ferrule does not have: ferrule warns and carries on.
worker_class = "gthread"

HOOK_LOG = os.environ.get("HOOK_LOG")


def _record(hook, **fields):
    """Append one JSON line describing this hook call to $HOOK_LOG (if set)."""
    if not HOOK_LOG:
        return
    line = json.dumps({"hook": hook, "pid": os.getpid(), **fields}, default=str)
    with open(HOOK_LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


# --- server hooks ----------------------------------------------------------------------------


def on_starting(server):
    server.log.info("on_starting: %d worker(s) to start", server.num_workers)
    _record(
        "on_starting",
        server_pid=server.pid,
        num_workers=server.num_workers,
        cfg_workers=server.cfg.workers,
        cfg_timeout=server.cfg.timeout,
        greeting=os.environ.get("GREETING"),
    )


def when_ready(server):
    server.log.info("when_ready: listening on %s", ", ".join(str(s) for s in server.LISTENERS))
    _record("when_ready", server_pid=server.pid, listeners=[str(s) for s in server.LISTENERS])


def pre_fork(server, worker):
    _record("pre_fork", server_pid=server.pid, worker_pid=worker.pid, age=worker.age)


def post_fork(server, worker):
    server.log.info("post_fork: worker %s (age %d) spawned", worker.pid, worker.age)
    _record(
        "post_fork",
        server_pid=server.pid,
        worker_pid=worker.pid,
        ppid=worker.ppid,
        age=worker.age,
    )


def post_worker_init(worker):
    worker.log.info("post_worker_init: worker %s loaded the application", worker.pid)
    _record(
        "post_worker_init",
        worker_pid=worker.pid,
        age=worker.age,
        app_loaded=callable(worker.wsgi),
    )


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)
    req.started = time.monotonic()  # post_request gets the same object
    _record(
        "pre_request",
        worker_pid=worker.pid,
        method=req.method,
        path=req.path,
        query=req.query,
        uri=req.uri,
        headers=dict(req.headers),
    )


def post_request(worker, req, environ, resp):
    _record(
        "post_request",
        worker_pid=worker.pid,
        method=req.method,
        path=req.path,
        path_info=environ["PATH_INFO"],
        status=resp.status,
        elapsed=time.monotonic() - req.started,
    )


def worker_exit(server, worker):
    server.log.info("worker_exit: worker %s is exiting", worker.pid)
    _record("worker_exit", server_pid=server.pid, worker_pid=worker.pid, age=worker.age)


def on_exit(server):
    server.log.info("on_exit: goodbye")
    _record("on_exit", server_pid=server.pid)
