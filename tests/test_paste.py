"""The PasteDeploy server runner: a Pyramid app in an .ini file, served by Pyramid's own
`pserve` (and by `paste.deploy.loadserver`), through the `paste.server_runner` entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from conftest import ferrule_env, get, get_unix, wait_until
from ferrule import paste, settings

PSERVE = Path(sys.executable).parent / "pserve"


def write_ini(tmp_path: Path, server: str, name: str = "app.ini") -> Path:
    path = tmp_path / name
    path.write_text(
        textwrap.dedent(
            """\
            [app:main]
            use = call:paste_pyramid_app:main
            greeting = hi

            [server:main]
            """
        )
        + textwrap.dedent(server)
    )
    return path


def test_the_entry_point_is_registered():
    eps = entry_points(group="paste.server_runner")
    (ep,) = [ep for ep in eps if ep.name == "main" and ep.value.startswith("ferrule")]
    assert ep.load() is paste.run


def test_pserve_serves_a_pyramid_app(start_server, tmp_path):
    ini = write_ini(
        tmp_path,
        """\
        use = egg:ferrule
        host = 127.0.0.1
        port = 0
        threads = 4
        """,
    )
    srv = start_server(str(ini), command=[str(PSERVE)], bind=False)
    status, body = get(srv.host, srv.port, "/")
    assert status == 200
    assert body.startswith("hi from pyramid pid=") and "wsgi.multiprocess=False" in body
    assert "Using 4 threads" in srv.log
    srv.signal(signal.SIGTERM)
    assert srv.proc.wait(10) == 0


def test_pserve_with_workers_a_unix_socket_and_gunicorn_names(start_server, tmp_path):
    sock = tmp_path / "app.sock"
    hook_log = tmp_path / "hooks.log"
    hooks = tmp_path / "hooks.conf.py"
    hooks.write_text(
        f"def pre_request(worker, req):\n    open({str(hook_log)!r}, 'a').write(req.path + '\\n')\n"
    )
    ini = write_ini(
        tmp_path,
        f"""\
        use = egg:ferrule#main
        listen = 127.0.0.1:0 unix:{sock}
        workers = 2
        timeout = 20
        keepalive = 2
        loglevel = debug
        config = {hooks}
        worker_class = sync
        """,
    )
    srv = start_server(str(ini), command=[str(PSERVE)], bind=False)
    srv.wait_for_log(r"Ready: 2 workers serving")
    assert "gunicorn setting 'worker_class' is not supported" in srv.log
    status, body = get(srv.host, srv.port, "/")
    assert status == 200 and "wsgi.multiprocess=True" in body
    status, body = get_unix(str(sock), "/")
    assert status == 200 and body.startswith("hi from pyramid")
    wait_until(lambda: hook_log.exists() and hook_log.read_text().count("/\n") == 2)
    srv.signal(signal.SIGTERM)
    assert srv.proc.wait(15) == 0


def test_paste_deploy_loadserver(start_server, tmp_path):
    ini = write_ini(tmp_path, "use = egg:ferrule\nport = 0\n")
    script = (
        "import sys\n"
        "from paste.deploy import loadapp, loadserver\n"
        "uri = 'config:' + sys.argv[1]\n"
        "loadserver(uri)(loadapp(uri))\n"
    )
    srv = start_server("-c", script, str(ini), command=[sys.executable], bind=False)
    assert srv.host == "127.0.0.1"
    assert get(srv.host, srv.port, "/")[0] == 200


def test_ini_values_go_through_ferrules_validators():
    values, hooks, warnings = paste.options(
        {
            "host": "0.0.0.0",
            "port": "8080",
            "threads": "16",
            "max-requests": "100",
            "timeout": "45",  # gunicorn's name for worker_timeout
            "keepalive": "3",
            "access_log": "true",
            "raw_env": "A=1\nB=2",
            "statsd_host": "localhost:8125",
            "post_fork": "os.path.samefile",  # a gunicorn hook, by import string
        },
        "app.ini [server]",
    )
    assert values == {
        "host": "0.0.0.0",
        "port": 8080,
        "threads": 16,
        "max_requests": 100,
        "worker_timeout": 45.0,
        "keep_alive": 3.0,
        "access_log": True,
        "raw_env": ("A=1", "B=2"),
    }
    assert hooks == {"post_fork": os.path.samefile}
    assert warnings == [
        "app.ini [server]: gunicorn setting 'statsd_host' is not supported by ferrule and "
        "is ignored (no statsd support)"
    ]
    resolved = settings.resolve([settings.Layer("app.ini [server]", values)])
    assert resolved.bind == ("0.0.0.0:8080",)


@pytest.mark.parametrize(
    "conf, fragments",
    [
        ({"threads": "many"}, ["app.ini [server]: 'threads'", "expected an integer"]),
        ({"port": "99999"}, ["'port'", "between 0 and 65535"]),
        ({"thread": "4"}, ["unknown setting 'thread'", "did you mean 'threads'"]),
        ({"wsgi_app": "m:app"}, ["'wsgi_app' cannot be set here"]),
        ({"preload_app": "true"}, ["'preload_app' cannot be set here"]),
        ({"listen": "127.0.0.1:1", "bind": "127.0.0.1:2"}, ["both set 'bind'"]),
        ({"on_starting": "os.no_such"}, ["'on_starting'", "no attribute"]),
    ],
)
def test_bad_ini_values_name_the_file_and_key(conf, fragments):
    with pytest.raises(settings.SettingError) as excinfo:
        paste.options(conf, "app.ini [server]")
    for fragment in fragments:
        assert fragment in str(excinfo.value)


def test_pserve_reports_a_bad_value(tmp_path):
    ini = write_ini(tmp_path, "use = egg:ferrule\nthreads = 0\n")
    proc = subprocess.run(
        [str(PSERVE), str(ini)],
        cwd=tmp_path,
        env=ferrule_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"{ini} [server]: 'threads': must be at least 1" in proc.stderr


def test_serve_keywords_and_ini_keys_agree():
    """Every setting serve() takes can be set in [server:main], by the same name."""
    table = paste._table()
    for s in settings.SETTINGS:
        if s.in_serve:
            assert table[s.name] == s.name
    assert set(paste.SPLIT) <= set(settings.BY_NAME)  # the list-valued keys are settings
