"""gunicorn Python config files (`-c gunicorn.conf.py`), server hooks and `raw_env`.

The sample config in examples/gunicorn_conf is run unchanged, with real processes: each hook
appends a JSON line to $HOOK_LOG, and the tests check that every hook fired, in which process,
with which arguments. (When gunicorn itself is at hand, in the benchmark peers' venv, the same
file is run by gunicorn too, and fires the same hooks.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, ferrule_env, get, run_ferrule, wait_until
from ferrule import cli, config, gunicorn_conf, settings
from ferrule.gunicorn_conf import GUNICORN, HOOK

SAMPLE_DIR = EXAMPLES / "gunicorn_conf"
SAMPLE = SAMPLE_DIR / "gunicorn.conf.py"
ALL_HOOKS = (
    "on_starting",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "pre_request",
    "post_request",
    "worker_exit",
    "on_exit",
)
PEER_GUNICORN = ROOT / "bench" / ".venv-peers" / "bin" / "gunicorn"


def read_hooks(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def of(entries: list[dict], hook: str) -> list[dict]:
    return [e for e in entries if e["hook"] == hook]


def hello_requests(srv, count: int) -> set[str]:
    bodies = set()
    for i in range(count):
        status, body = get(srv.host, srv.port, f"/hello?name=n{i}")
        assert status == 200, body
        assert body.startswith(f"Hello, n{i}!"), body  # GREETING comes from raw_env
        bodies.add(body)
    return bodies


# --- the sample, end to end ---------------------------------------------------------------


def test_sample_with_two_workers_fires_every_hook(start_server, tmp_path):
    hook_log = tmp_path / "hooks.jsonl"
    srv = start_server("-c", "gunicorn.conf.py", cwd=SAMPLE_DIR, env={"HOOK_LOG": str(hook_log)})
    srv.wait_for_log(r"Ready: 2 workers serving")
    hello_requests(srv, 6)
    wait_until(lambda: len(of(read_hooks(hook_log), "post_request")) == 6, what="post_request")
    assert srv.stop() == 0
    master = srv.proc.pid
    entries = read_hooks(hook_log)
    assert {e["hook"] for e in entries} == set(ALL_HOOKS)
    assert "gunicorn setting 'worker_class' is not supported by ferrule" in srv.log

    (starting,) = of(entries, "on_starting")
    assert starting == {
        "hook": "on_starting",
        "pid": master,
        "server_pid": master,
        "num_workers": 2,
        "cfg_workers": 2,
        "cfg_timeout": 30.0,
        "greeting": "Hello",  # raw_env is set before the hooks run
    }
    (ready,) = of(entries, "when_ready")
    assert ready["pid"] == master and ready["listeners"] == [srv.url]

    forks = of(entries, "pre_fork")
    assert [(e["pid"], e["worker_pid"], e["age"]) for e in forks] == [
        (master, "[booting]", 1),
        (master, "[booting]", 2),
    ]
    posts = of(entries, "post_fork")
    workers = {e["pid"] for e in posts}
    assert len(workers) == 2 and master not in workers
    for e in posts:
        assert e["worker_pid"] == e["pid"] and e["ppid"] == master and e["server_pid"] == master
    assert sorted(e["age"] for e in posts) == [1, 2]
    inits = of(entries, "post_worker_init")
    assert {e["pid"] for e in inits} == workers
    assert all(e["worker_pid"] == e["pid"] and e["app_loaded"] for e in inits)
    age_of = {e["pid"]: e["age"] for e in posts}
    assert all(age_of[e["pid"]] == e["age"] for e in inits)

    pre, post = of(entries, "pre_request"), of(entries, "post_request")
    assert len(pre) == len(post) == 6
    for e in pre:
        assert e["pid"] in workers and e["worker_pid"] == e["pid"]
        assert (e["method"], e["path"]) == ("GET", "/hello")
        assert e["query"].startswith("name=n") and e["uri"] == f"/hello?{e['query']}"
        assert e["headers"]["HOST"] == f"{srv.host}:{srv.port}"
    for e in post:
        assert e["pid"] in workers and e["worker_pid"] == e["pid"]
        assert (e["method"], e["path"], e["path_info"]) == ("GET", "/hello", "/hello")
        assert e["status"] == "200 OK" and e["elapsed"] >= 0  # req.started set by pre_request
    assert sorted(e["pid"] for e in pre) == sorted(e["pid"] for e in post)

    exits = of(entries, "worker_exit")
    assert {e["pid"] for e in exits} == workers
    assert all(e["worker_pid"] == e["pid"] and e["server_pid"] == master for e in exits)
    assert entries[-1] == {"hook": "on_exit", "pid": master, "server_pid": master}
    order = [e["hook"] for e in entries if e["pid"] == master]
    assert order == ["on_starting", "when_ready", "pre_fork", "pre_fork", "on_exit"]


def test_sample_as_a_single_process_fires_the_hooks_that_make_sense(start_server, tmp_path):
    hook_log = tmp_path / "hooks.jsonl"
    # -w 1 and no max_requests: one process, no master, no fork.
    srv = start_server(
        "-c",
        "gunicorn.conf.py",
        "-w",
        "1",
        "--max-requests",
        "0",
        cwd=SAMPLE_DIR,
        env={"HOOK_LOG": str(hook_log)},
    )
    hello_requests(srv, 3)
    wait_until(lambda: len(of(read_hooks(hook_log), "post_request")) == 3, what="post_request")
    assert srv.stop() == 0
    pid = srv.proc.pid
    entries = read_hooks(hook_log)
    assert "Booting worker" not in srv.log
    hooks = [e["hook"] for e in entries]
    assert hooks[:3] == ["on_starting", "when_ready", "post_worker_init"]
    assert hooks[-2:] == ["worker_exit", "on_exit"]
    # A request's post_request runs when the server closes its response, so the client may
    # already have sent the next one: only the counts are certain in between.
    assert sorted(hooks[3:-2]) == ["post_request"] * 3 + ["pre_request"] * 3
    assert all(e["pid"] == pid for e in entries)
    assert of(entries, "on_starting")[0]["num_workers"] == 1
    assert of(entries, "when_ready")[0]["listeners"] == [srv.url]
    (init,) = of(entries, "post_worker_init")
    assert init["worker_pid"] == pid and init["app_loaded"] and init["age"] == 1
    assert all(e["status"] == "200 OK" for e in of(entries, "post_request"))
    assert of(entries, "worker_exit")[0]["server_pid"] == pid


@pytest.mark.skipif(not PEER_GUNICORN.exists(), reason="gunicorn not installed in bench/")
def test_the_sample_is_a_real_gunicorn_config(tmp_path):
    """gunicorn runs the same file and fires the same hooks (bench/.venv-peers has it)."""
    hook_log = tmp_path / "hooks.jsonl"
    proc = subprocess.Popen(
        [str(PEER_GUNICORN), "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0"],
        cwd=SAMPLE_DIR,
        env={**ferrule_env(), "HOOK_LOG": str(hook_log), "HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listening = wait_until(
            lambda: of(read_hooks(hook_log), "when_ready"), timeout=20, what="when_ready"
        )
        wait_until(lambda: len(of(read_hooks(hook_log), "post_worker_init")) == 2, timeout=20)
        host, port = listening[0]["listeners"][0].removeprefix("http://").rsplit(":", 1)
        assert get(host, int(port), "/hello?name=g")[0] == 200
        wait_until(lambda: of(read_hooks(hook_log), "post_request"), what="post_request")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert {e["hook"] for e in read_hooks(hook_log)} == set(ALL_HOOKS)


# --- reading the file ----------------------------------------------------------------------


def write_conf(tmp_path: Path, text: str, name: str = "gunicorn.conf.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


SAMPLES = {
    "wsgi_app": "pkg.mod:create()",
    "bind": ["127.0.0.1:9001", "unix:/tmp/ferrule-gconf.sock"],
    "backlog": 64,
    "workers": 3,
    "threads": 5,
    "max_requests": 100,
    "max_requests_jitter": 10,
    "timeout": 45,
    "graceful_timeout": 12,
    "keepalive": 3,
    "limit_request_line": 4000,
    "limit_request_fields": 50,
    "limit_request_field_size": 4000,
    "reload": True,
    "reload_extra_files": ["templates/a.html"],
    "preload_app": True,
    "reuse_port": True,
    "chdir": "{tmp}",
    "raw_env": ["A=1", "B=x=y"],
    "pidfile": "/tmp/ferrule-gconf.pid",
    "umask": 0o27,
    "pythonpath": "src,lib",
    "root_path": "/app",
    "forwarded_allow_ips": "127.0.0.1,10.0.0.0/8",
    "accesslog": "-",
    "access_log_format": '%(h)s "%(r)s" %(s)s',
    "errorlog": "/tmp/ferrule-gconf-error.log",
    "loglevel": "WARNING",
    "logconfig_json": "logging.json",
    "proxy_protocol": True,
    "keyfile": "{tmp}/key.pem",
    "certfile": "{tmp}/cert.pem",
    "ca_certs": "{tmp}/ca.pem",
}


def _sample(name: str, tmp_path: Path):
    value = SAMPLES[name]
    return value.replace("{tmp}", str(tmp_path)) if isinstance(value, str) else value


def test_every_shared_setting_has_a_sample():
    shared = {row.gunicorn for row in GUNICORN if row.ferrule not in (None, HOOK)}
    assert shared == set(SAMPLES)
    issue = "bind workers threads timeout keepalive graceful_timeout max_requests "
    issue += "max_requests_jitter accesslog errorlog loglevel access_log_format "
    issue += "forwarded_allow_ips preload_app raw_env chdir pythonpath proxy_protocol "
    issue += "certfile keyfile wsgi_app"
    assert set(issue.split()) <= shared


@pytest.mark.parametrize(
    "row",
    [row for row in GUNICORN if row.ferrule not in (None, HOOK)],
    ids=lambda row: row.gunicorn,
)
def test_every_mapped_setting_that_ferrule_has_is_applied(tmp_path, row):
    for name in ("key.pem", "cert.pem", "ca.pem"):
        (tmp_path / name).write_text("-----BEGIN X-----\n")
    value = _sample(row.gunicorn, tmp_path)
    path = write_conf(tmp_path, f"{row.gunicorn} = {value!r}\n")
    file = config.load(str(path))
    if row.ferrule not in settings.BY_NAME:
        assert file.values == {}
        assert file.warnings == (
            f"{path}: gunicorn setting {row.gunicorn!r} is not supported by ferrule and is "
            f"ignored (ferrule's {row.ferrule!r} setting is planned)",
        )
        pytest.skip(f"ferrule has no {row.ferrule!r} setting yet (warned about)")
    expected = settings.check(row.ferrule, value, "sample")
    assert file.values == {row.ferrule: expected}
    assert file.warnings == ()
    assert expected != settings.BY_NAME[row.ferrule].default


def test_a_planned_setting_is_used_once_it_exists(tmp_path, monkeypatch):
    """A row whose ferrule setting is missing warns; the same row applies once it exists."""
    path = write_conf(tmp_path, "keepalive = 7\n")
    monkeypatch.delitem(settings.BY_NAME, "keep_alive")
    (warning,) = config.load(str(path)).warnings
    assert "gunicorn setting 'keepalive' is not supported" in warning
    monkeypatch.undo()
    assert config.load(str(path)).values == {"keep_alive": 7.0}


def test_names_that_are_not_gunicorn_settings_are_ignored(tmp_path):
    path = write_conf(
        tmp_path,
        """\
        import multiprocessing
        import os as _os
        from os.path import join

        port = 9999            # a helper, not a gunicorn setting: ignored as gunicorn does
        host = "0.0.0.0"
        header_timeout = 1     # a ferrule setting name, but not gunicorn's: ignored too
        BIND = "0.0.0.0:1"     # setting names are lower case
        _private = 1

        def helper():
            return 2

        workers = helper()
        bind = join("unix:", "tmp", "x.sock")
        """,
    )
    inv = cli.parse(["-c", str(path), "app:app"])
    assert inv.warnings == ()
    assert inv.settings.workers == 2
    assert inv.settings.bind == ("unix:/tmp/x.sock",)
    assert inv.settings.port == 8000 and inv.settings.header_timeout == 30.0


def test_unsupported_gunicorn_settings_and_hooks_are_warned_about_by_name(tmp_path):
    path = write_conf(
        tmp_path,
        """\
        worker_class = "gevent"
        worker_connections = 1000
        statsd_host = "localhost:8125"
        daemon = False
        logconfig_dict = {"version": 1}

        def on_reload(server):
            pass
        """,
    )
    file = config.load(str(path))
    warned = {w.split("'")[1]: w for w in file.warnings}
    assert set(warned) == {
        "worker_class",
        "worker_connections",
        "statsd_host",
        "daemon",
        "logconfig_dict",
        "on_reload",
    }
    for name, warning in warned.items():
        assert warning.startswith(f"{path}: gunicorn setting {name!r} is not supported")
    assert "--log-config" in warned["logconfig_dict"]
    assert "hook not called" in warned["on_reload"]


def test_unsupported_settings_are_logged_when_serving(start_server, tmp_path):
    path = write_conf(tmp_path, "wsgi_app = 'cli_hello:app'\nstatsd_host = 'localhost:8125'\n")
    srv = start_server("-c", str(path))
    assert "[WARNING] " in srv.log
    assert "gunicorn setting 'statsd_host' is not supported by ferrule and is ignored" in srv.log
    assert get(srv.host, srv.port)[0] == 200


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("workers = 'many'\n", ["'workers'", "expected an integer"]),
        ("timeout = -1\n", ["'timeout'", "0 or more"]),
        ("bind = 8000\n", ["'bind'"]),
        ("raw_env = ['NOVALUE']\n", ["'raw_env'", "KEY=VALUE"]),
        ("def on_starting():\n    pass\n", ["'on_starting'", "1 positional", "takes 0"]),
        ("def post_request(a, b, c, d, e):\n    pass\n", ["'post_request'", "2 or 3 or 4"]),
        ("pre_fork = 'os.no_such_function'\n", ["'pre_fork'", "no attribute"]),
        ("when_ready = 42\n", ["'when_ready'", "expected a callable"]),
        ("import no_such_module_anywhere\n", ["ModuleNotFoundError", "no_such_module_anywhere"]),
        ("workers = (\n", ["SyntaxError"]),
    ],
)
def test_bad_values_exit_2_naming_the_file_and_key(tmp_path, text, fragments):
    path = write_conf(tmp_path, text)
    proc = run_ferrule("-c", str(path), "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr


def test_hooks_may_be_named_by_import_string_and_post_request_by_arity(tmp_path):
    path = write_conf(
        tmp_path,
        """\
        on_exit = "os.fspath"  # a "module.function" string, as gunicorn allows

        def post_request(worker, req):
            return "two"
        """,
    )
    file = config.load(str(path))
    assert file.hooks["on_exit"] is os.fspath
    # gunicorn's rule: a 2- or 3-argument post_request is called without environ/resp.
    assert file.hooks["post_request"](None, None, {}, None) == "two"


def test_print_config_shows_the_mapped_values(tmp_path):
    path = write_conf(tmp_path, "timeout = 90\nkeepalive = 2\npreload_app = True\ndaemon = True\n")
    proc = run_ferrule("-c", str(path), "--print-config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "worker_timeout = 90" in proc.stdout
    assert "keep_alive = 2" in proc.stdout
    assert "preload = true" in proc.stdout
    assert "gunicorn setting 'daemon' is not supported" in proc.stderr


# --- hooks: every kind of response, and hooks that raise ---------------------------------

RECORDING = """\
import json, os

wsgi_app = "gconf_app:app"
LOG = os.environ["HOOK_LOG"]
FAIL = os.environ.get("FAIL_HOOK", "")

def _record(hook, **fields):
    with open(LOG, "a") as f:
        f.write(json.dumps({"hook": hook, "pid": os.getpid(), **fields}) + "\\n")
    if hook == FAIL:
        raise ValueError(f"{hook} failed on purpose")

def on_starting(server): _record("on_starting")
def when_ready(server): _record("when_ready")
def pre_fork(server, worker): _record("pre_fork")
def post_fork(server, worker): _record("post_fork")
def post_worker_init(worker): _record("post_worker_init")
def worker_exit(server, worker): _record("worker_exit")
def on_exit(server): _record("on_exit")

def pre_request(worker, req):
    req.seen = worker.nr
    _record("pre_request", path=req.path, nr=worker.nr)

def post_request(worker, req, environ, resp):
    _record(
        "post_request", path=req.path, nr=req.seen, status=resp.status, sent=resp.sent,
        length=resp.response_length, code=resp.status_code,
    )
"""


@pytest.fixture
def recording(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"0123456789" * 5000)
    conf = write_conf(tmp_path, RECORDING, "recording.conf.py")
    hook_log = tmp_path / "hooks.jsonl"
    env = {"HOOK_LOG": str(hook_log), "GCONF_FILE": str(data)}
    return conf, hook_log, env


@pytest.mark.parametrize("workers", ["1", "2"])
def test_request_hooks_see_every_kind_of_response(start_server, recording, workers):
    conf, hook_log, env = recording
    srv = start_server("-c", str(conf), "-w", workers, env=env)
    cases = {
        "/list": (200, "list"),
        "/gen": (200, "gen-erated"),
        "/file": (200, "0123456789" * 5000),
        "/write": (200, "written-by"),
    }
    for path, (status, body) in cases.items():
        assert get(srv.host, srv.port, path) == (status, body)
    assert get(srv.host, srv.port, "/raise")[0] == 500
    posts = wait_until(
        lambda: (p := of(read_hooks(hook_log), "post_request")) and len(p) == 5 and p,
        what="five post_request",
    )
    by_path = {e["path"]: e for e in posts}
    assert by_path["/list"]["status"] == "200 OK" and by_path["/list"]["sent"] == 4
    assert by_path["/gen"]["sent"] == len("gen-erated")
    assert by_path["/file"]["sent"] == 50000 and by_path["/file"]["length"] == 50000
    assert by_path["/write"]["sent"] == 10 and by_path["/write"]["code"] == 200
    assert by_path["/raise"]["status"] is None  # the app raised before start_response
    assert sorted(e["nr"] for e in posts)[-1] >= 3  # worker.nr counts requests
    srv.wait_for_log(r"RuntimeError: gconf_app: boom")
    assert srv.stop() == 0


def test_a_reload_forks_new_workers_through_the_hooks(start_server, recording):
    conf, hook_log, env = recording
    srv = start_server("-c", str(conf), "-w", "2", env=env)
    srv.wait_for_log(r"Ready: 2 workers serving")
    srv.signal(signal.SIGHUP)
    srv.wait_for_log(r"Reload done")
    wait_until(lambda: len(of(read_hooks(hook_log), "worker_exit")) == 2, what="old workers exit")
    entries = read_hooks(hook_log)
    assert len(of(entries, "pre_fork")) == len(of(entries, "post_fork")) == 4
    assert len(of(entries, "post_worker_init")) == 4
    old = {e["pid"] for e in of(entries, "post_fork")[:2]}
    assert {e["pid"] for e in of(entries, "worker_exit")} == old
    assert len(of(entries, "on_starting")) == len(of(entries, "when_ready")) == 1
    assert srv.stop() == 0


def test_list_responses_keep_their_content_length_with_request_hooks(start_server, recording):
    conf, _, env = recording
    srv = start_server("-c", str(conf), env=env)
    with srv.connect() as sock:
        sock.sendall(b"GET /list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n")[0].lower()
    assert b"content-length: 4" in head and b"chunked" not in head


@pytest.mark.parametrize(
    "hook, workers, code",
    [
        ("on_starting", "1", 1),
        ("on_starting", "2", 1),
        ("when_ready", "1", 1),
        ("when_ready", "2", 1),
        ("post_fork", "2", 3),
        ("post_worker_init", "2", 3),
        ("post_worker_init", "1", 1),
    ],
)
def test_a_failing_startup_hook_stops_ferrule(recording, tmp_path, hook, workers, code):
    conf, hook_log, env = recording
    proc = subprocess.run(
        [sys.executable, "-m", "ferrule", "-c", str(conf), "-w", workers, "-b", "127.0.0.1:0"],
        cwd=tmp_path,
        env=ferrule_env({**env, "FAIL_HOOK": hook}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stderr
    assert f"The {hook} hook ({conf}) raised an exception" in proc.stderr
    assert f"ValueError: {hook} failed on purpose" in proc.stderr
    hooks = [e["hook"] for e in read_hooks(hook_log)]
    assert "pre_request" not in hooks and hook in hooks


@pytest.mark.parametrize("hook", ["pre_fork", "worker_exit", "on_exit", "post_request"])
def test_a_failing_hook_elsewhere_is_logged_and_ignored(start_server, recording, hook):
    conf, hook_log, env = recording
    srv = start_server("-c", str(conf), "-w", "2", env={**env, "FAIL_HOOK": hook})
    srv.wait_for_log(r"Ready: 2 workers serving")
    assert get(srv.host, srv.port, "/list") == (200, "list")
    assert srv.stop() == 0
    assert f"The {hook} hook ({conf}) raised an exception (ignored)" in srv.log
    assert f"ValueError: {hook} failed on purpose" in srv.log
    assert "on_exit" in [e["hook"] for e in read_hooks(hook_log)]


def test_a_failing_pre_request_fails_only_that_request(start_server, recording):
    conf, hook_log, env = recording
    srv = start_server("-c", str(conf), env={**env, "FAIL_HOOK": "pre_request"})
    assert get(srv.host, srv.port, "/list")[0] == 500
    assert get(srv.host, srv.port, "/gen")[0] == 500
    wait_until(lambda: len(of(read_hooks(hook_log), "post_request")) == 2, what="post_request")
    assert srv.stop() == 0
    assert "ValueError: pre_request failed on purpose" in srv.log


def test_without_request_hooks_the_app_is_not_wrapped(tmp_path):
    from ferrule.hooks import Hooks

    def app(environ, start_response):
        return []

    hooks = Hooks({"on_starting": lambda server: None})
    server = hooks.starting(settings.resolve([]), lambda: 1, master=False)
    assert server.cfg.timeout == 30.0 and server.cfg.keepalive == 5.0
    assert hooks.wrap(app, hooks.single_worker([])) is app
    with_pre = Hooks({"pre_request": lambda worker, req: None})
    with_pre.starting(settings.resolve([]), lambda: 1, master=False)
    assert with_pre.wrap(app, with_pre.single_worker([])) is not app


# --- raw_env ---------------------------------------------------------------------------------


def test_raw_env_from_the_command_line_and_a_config_file(start_server, tmp_path):
    conf = write_conf(tmp_path, "raw_env = ['GCONF_A=from file', 'GCONF_EMPTY=']\n")
    srv = start_server(
        "-c", str(conf), "-e", "GCONF_B=cli", "--env", "GCONF_EQ=a=b", "-w", "2", "gconf_app:app"
    )
    # The command line replaces the file's list (as with every setting).
    assert json.loads(get(srv.host, srv.port, "/env")[1]) == {
        "GCONF_A": None,
        "GCONF_B": "cli",
        "GCONF_EMPTY": None,
        "GCONF_EQ": "a=b",
    }
    srv2 = start_server("-c", str(conf), "gconf_app:app")
    assert json.loads(get(srv2.host, srv2.port, "/env")[1]) == {
        "GCONF_A": "from file",
        "GCONF_B": None,
        "GCONF_EMPTY": "",
        "GCONF_EQ": None,
    }


def test_raw_env_in_toml_and_bad_values(tmp_path):
    toml = tmp_path / "f.toml"
    toml.write_text('raw-env = ["X=1", "Y=2"]\n')
    assert config.load(str(toml)).values == {"raw_env": ("X=1", "Y=2")}
    proc = run_ferrule("-e", "NOEQUALS", "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--env" in proc.stderr and "KEY=VALUE" in proc.stderr
    with pytest.raises(ValueError, match="raw_env"):
        settings.from_kwargs({"raw_env": ["=x"]})


def test_gunicorn_table_has_no_duplicates_and_names_every_hook():
    names = [row.gunicorn for row in GUNICORN]
    assert len(names) == len(set(names))
    hooks = {row.gunicorn for row in GUNICORN if row.ferrule == HOOK}
    assert hooks == set(ALL_HOOKS) == set(gunicorn_conf.HOOK_ARITY)
    docs = (ROOT / "docs" / "migrating.md").read_text()
    for row in GUNICORN:  # every gunicorn setting is in the migration guide
        assert f"`{row.gunicorn}`" in docs, row.gunicorn
