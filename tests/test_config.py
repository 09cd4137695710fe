"""Settings, config files (TOML, YAML with the seed's keys), precedence and serve(**kwargs).

Most tests run in-process and need no Rust core; the end-to-end ones start the real server.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import ferrule
import pytest
import requests
from conftest import APPS, ROOT, run_ferrule
from ferrule import cli, config, settings, sockets

TIMEOUT = 10
SEED_PYDEV = APPS / "seed_pydev"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def seed_yaml(directory: Path, app_loc: Path) -> Path:
    """The seed article's app.yaml, word for word except for its app-loc path."""
    return write(
        directory / "app.yaml",
        f"""
        address: 0.0.0.0
        port: 9989
        concurrency: 5
        backlog: 100
        timeout: 5
        app-loc: {app_loc}
        app-module: wsgi
        app: application
        """,
    )


# --- validators ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("threads", "16", 16),
        ("threads", 3, 3),
        ("backlog", " 64 ", 64),
        ("port", "0", 0),
        ("keep_alive", "2.5", 2.5),
        ("keep_alive", 0, 0.0),
        ("header_timeout", 7, 7.0),
        ("limit_request_line", 0, settings.MAX_REQUEST_LINE),
        ("limit_request_fields", "0", settings.MAX_REQUEST_FIELDS),
        ("limit_request_field_size", 0, settings.MAX_REQUEST_FIELD_SIZE),
        ("limit_request_body", "1048576", 1048576),
        ("access_log", "yes", True),
        ("access_log", False, False),
        ("log_level", "WARNING", "warning"),
        ("root_path", "/api/", "/api"),
        ("root_path", "", ""),
        ("host", "[::1]", "::1"),
        ("pythonpath", "a, b,,c", ("a", "b", "c")),
        ("pythonpath", ["x", "y,z"], ("x", "y", "z")),
        ("bind", "8080", ("127.0.0.1:8080",)),
        (
            "bind",
            ["[::1]:0", "unix:///tmp/x.sock", "fd://3"],
            ("[::1]:0", "unix:/tmp/x.sock", "fd://3"),
        ),
        ("wsgi_app", " mod:app ", "mod:app"),
    ],
)
def test_validators_accept(name, raw, value):
    assert settings.check(name, raw, "test") == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("threads", "abc"),
        ("threads", 0),
        ("threads", True),
        ("threads", 2.5),
        ("port", 70000),
        ("backlog", "-1"),
        ("keep_alive", "-1"),
        ("keep_alive", "nan"),
        ("header_timeout", 0),
        ("graceful_timeout", "soon"),
        ("limit_request_line", 65537),
        ("limit_request_body", -1),
        ("access_log", "maybe"),
        ("log_level", "loud"),
        ("root_path", "api"),
        ("bind", "1.2.3.4:99999"),
        ("bind", "::1:80"),
        ("bind", []),
        ("bind", "fd://x"),
        ("bind", "unix:"),
        ("chdir", "/nonexistent/ferrule/dir"),
        ("wsgi_app", "mod:f(os.environ)"),
        ("pythonpath", 5),
    ],
)
def test_validators_reject(name, raw):
    with pytest.raises(settings.SettingError) as info:
        settings.check(name, raw, f"label-{name}")
    assert str(info.value).startswith(f"label-{name}: ")


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("127.0.0.1:8000", sockets.BindSpec("tcp", host="127.0.0.1", port=8000)),
        ("localhost", sockets.BindSpec("tcp", host="localhost", port=8000)),
        (":9000", sockets.BindSpec("tcp", host="0.0.0.0", port=9000)),
        ("tcp://10.0.0.1:1", sockets.BindSpec("tcp", host="10.0.0.1", port=1)),
        ("[::1]:0", sockets.BindSpec("tcp", host="::1", port=0)),
        ("[::]", sockets.BindSpec("tcp", host="::", port=8000)),
        ("unix:/run/app.sock", sockets.BindSpec("unix", path="/run/app.sock")),
        ("unix:rel.sock", sockets.BindSpec("unix", path="rel.sock")),
        ("fd://3", sockets.BindSpec("fd", fd=3)),
    ],
)
def test_parse_bind(spec, parsed):
    assert sockets.parse_bind(spec) == parsed


# --- one declaration feeds everything ------------------------------------------------------


def test_every_setting_is_on_the_cli_and_documented():
    parser = cli.build_parser()
    dests = {a.dest for a in parser._actions}
    doc = (ROOT / "docs" / "settings.md").read_text()
    for s in settings.SETTINGS:
        assert s.name in dests, s.name
        assert f"### `{s.name}`" in doc, s.name
        assert s.section in settings.SECTIONS


def test_core_config_has_every_key_the_rust_core_reads():
    conf = ferrule.server.core_config(settings.resolve([]))
    assert set(conf) == {
        "threads",
        "keep_alive",
        "header_timeout",
        "limit_request_line",
        "limit_request_fields",
        "limit_request_field_size",
        "limit_request_body",
        "access_logfile",
        "access_logformat",
        "access_log_python",
        "root_path",
        "multiprocess",
        "graceful_timeout",
        "io_timeout",
        "max_connections",
        "forwarded_allow_ips",
        "proxy_protocol",
        "certfile",
        "keyfile",
        "ca_certs",
        "static",
        "static_cache_control",
        "errors",
        "metrics",
    }
    assert conf["threads"] == 8 and conf["multiprocess"] is False
    assert conf["max_connections"] > 0, "0 (the default) becomes a real limit"
    assert isinstance(conf["keep_alive"], float) and isinstance(conf["limit_request_body"], int)


def test_docs_are_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_settings_doc.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- config files --------------------------------------------------------------------------


def test_toml_keys_with_dashes_or_underscores(tmp_path):
    path = write(
        tmp_path / "ferrule.toml",
        """
        app = "cli_hello:app"
        bind = ["127.0.0.1:0", "unix:/tmp/ferrule-test.sock"]
        threads = 3
        keep-alive = 2
        header_timeout = 4.5
        limit-request-body = 1024
        access-log = true
        root_path = "/api"
        pythonpath = ["lib", "src"]
        """,
    )
    loaded = config.load(str(path))
    assert dict(loaded.values) == {
        "wsgi_app": "cli_hello:app",
        "bind": ("127.0.0.1:0", "unix:/tmp/ferrule-test.sock"),
        "threads": 3,
        "keep_alive": 2.0,
        "header_timeout": 4.5,
        "limit_request_body": 1024,
        "access_log": True,
        "root_path": "/api",
        "pythonpath": ("lib", "src"),
    }
    assert loaded.app_dirs == ()


def test_seed_yaml_keys(tmp_path):
    loaded = config.load(str(seed_yaml(tmp_path, SEED_PYDEV / "pyapp")))
    assert dict(loaded.values) == {
        "host": "0.0.0.0",
        "port": 9989,
        "threads": 5,
        "backlog": 100,
        "header_timeout": 5.0,
        "wsgi_app": "wsgi:application",
    }
    # pyapp is a package, so its parent (holding pydev and pyapp) follows it on sys.path.
    assert loaded.app_dirs == (str(SEED_PYDEV / "pyapp"), str(SEED_PYDEV))
    resolved = settings.resolve([loaded.layer()])
    assert resolved.bind == ("0.0.0.0:9989",)


def test_yaml_relative_app_loc_is_relative_to_the_file(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "code").mkdir()
    path = write(tmp_path / "conf" / "app.yml", "app-loc: code\napp: mod:app\n")
    loaded = config.load(str(path))
    assert loaded.app_dirs == (str(tmp_path / "conf" / "code"),)
    assert loaded.values["wsgi_app"] == "mod:app"


def test_yaml_app_module_defaults_to_application(tmp_path):
    loaded = config.load(str(write(tmp_path / "a.yaml", "app-module: wsgi.py\n")))
    assert loaded.values["wsgi_app"] == "wsgi:application"


def test_seed_keys_are_yaml_only(tmp_path):
    with pytest.raises(config.ConfigError, match="unknown setting 'concurrency'"):
        config.load(str(write(tmp_path / "a.toml", "concurrency = 5\n")))


@pytest.mark.parametrize(
    ("name", "text", "fragments"),
    [
        (
            "a.toml",
            "threads = 2\nworker_class = 'gevent'\n",
            ["a.toml", "unknown setting 'worker_class'"],
        ),
        ("a.toml", "thread = 2\n", ["unknown setting 'thread'", "did you mean 'threads'"]),
        ("a.yaml", "timeout: 5\nbogus-key: 1\n", ["a.yaml", "'bogus-key'"]),
        ("a.toml", "threads = 0\n", ["a.toml", "'threads'", "at least 1"]),
        ("a.yaml", "concurrency: many\n", ["a.yaml", "'concurrency'", "integer"]),
        ("a.toml", 'config = "other.toml"\n', ["cannot be set inside a config file"]),
        ("a.toml", "threads = 2\nthreads = 3\n", ["a.toml", "invalid TOML"]),
        ("a.yaml", "- just\n- a list\n", ["expected a mapping"]),
        ("a.yaml", "address: 1.2.3.4\nhost: 5.6.7.8\n", ["'host' and 'address' both set"]),
        ("a.toml", "keep-alive = 1\nkeep_alive = 2\n", ["given twice"]),
        ("a.yaml", "app-loc: /nonexistent/ferrule\n", ["'app-loc'", "not a directory"]),
        ("a.ini", "threads = 2\n", ["unsupported config file type '.ini'"]),
    ],
)
def test_config_errors(tmp_path, name, text, fragments):
    path = write(tmp_path / name, text)
    with pytest.raises(config.ConfigError) as info:
        config.load(str(path))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(config.ConfigError, match="cannot read config file"):
        config.load(str(tmp_path / "absent.toml"))


def test_empty_yaml_is_an_empty_config(tmp_path):
    assert dict(config.load(str(write(tmp_path / "e.yaml", "# nothing\n"))).values) == {}


# --- precedence ----------------------------------------------------------------------------


def layer(values, style="config"):
    return settings.Layer("x", values, style=style)


def test_defaults():
    s = settings.resolve([])
    assert s.bind == ("127.0.0.1:8000",)
    assert (s.threads, s.backlog, s.keep_alive, s.header_timeout) == (8, 2048, 5.0, 30.0)
    assert (s.log_level, s.access_log, s.root_path, s.wsgi_app) == ("info", False, "", None)


def test_later_layers_win():
    s = settings.resolve([layer({"threads": 3, "backlog": 10}), layer({"threads": 5})])
    assert (s.threads, s.backlog) == (5, 10)


@pytest.mark.parametrize(
    ("layers", "bind"),
    [
        ([{"port": 9000}], ("127.0.0.1:9000",)),
        ([{"host": "0.0.0.0"}], ("0.0.0.0:8000",)),
        ([{"host": "::1", "port": 1}], ("[::1]:1",)),
        ([{"host": "0.0.0.0", "port": 9989}, {"bind": ("unix:/s",)}], ("unix:/s",)),
        ([{"bind": ("unix:/s",)}, {"port": 0}], ("127.0.0.1:0",)),
        ([{"host": "0.0.0.0", "port": 9989}, {"port": 0}], ("0.0.0.0:0",)),
        ([{"host": "0.0.0.0", "port": 9989}, {"host": "127.0.0.2"}], ("127.0.0.2:9989",)),
    ],
)
def test_bind_host_port_resolution(layers, bind):
    assert settings.resolve([layer(v) for v in layers]).bind == bind


def test_bind_with_host_in_one_place_is_an_error():
    with pytest.raises(settings.SettingError, match="--bind cannot be combined with --port"):
        settings.resolve([settings.Layer("", {"bind": ("a:1",), "port": 2}, style="cli")])


def test_cli_overrides_config(tmp_path):
    path = write(tmp_path / "c.toml", 'app = "cli_hello:app"\nthreads = 3\nbacklog = 77\n')
    inv = cli.parse(["-c", str(path), "--threads", "5"])
    assert (inv.settings.threads, inv.settings.backlog) == (5, 77)
    assert inv.settings.wsgi_app == "cli_hello:app"
    inv = cli.parse(["-c", str(path), "other:application"])
    assert inv.settings.wsgi_app == "other:application"


def test_cli_bind_overrides_seed_address_and_port(tmp_path):
    path = seed_yaml(tmp_path, SEED_PYDEV / "pyapp")
    assert cli.parse(["-c", str(path), "--bind", "127.0.0.1:0"]).settings.bind == ("127.0.0.1:0",)
    assert cli.parse(["-c", str(path), "--port", "0"]).settings.bind == ("0.0.0.0:0",)


def test_print_config_shows_precedence(tmp_path):
    path = write(tmp_path / "c.yaml", "app: cli_hello:app\nconcurrency: 3\ntimeout: 9\n")
    proc = run_ferrule("-c", str(path), "--threads", "6", "--print-config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "threads = 6\n" in proc.stdout
    assert "header_timeout = 9\n" in proc.stdout
    assert 'wsgi_app = "cli_hello:app"\n' in proc.stdout
    # The printed config is itself a valid config file.
    (tmp_path / "printed.toml").write_text(proc.stdout)
    assert config.load(str(tmp_path / "printed.toml")).values["threads"] == 6


# --- serve(**kwargs) validation (no server is started) -------------------------------------


def hello(environ, start_response):
    start_response("200 OK", [])
    return [b"hi"]


def test_serve_rejects_unknown_keyword():
    with pytest.raises(TypeError, match="'worker_class'"):
        ferrule.serve(hello, worker_class="gevent")


def test_serve_rejects_wsgi_app_keyword():
    with pytest.raises(TypeError, match="'wsgi_app'"):
        ferrule.serve(hello, wsgi_app="mod:app")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"threads": 0}, "threads"),
        ({"port": "http"}, "port"),
        ({"keep_alive": -1}, "keep_alive"),
        ({"bind": "[::1"}, "bind"),
        ({"log_level": "chatty"}, "log_level"),
    ],
)
def test_serve_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        ferrule.serve(hello, **kwargs)


def test_serve_rejects_bind_with_host():
    with pytest.raises(ValueError, match="bind= cannot be combined with port="):
        ferrule.serve(hello, bind="127.0.0.1:0", port=0)


def test_serve_rejects_a_bad_config_file(tmp_path):
    path = write(tmp_path / "c.toml", "threads = -3\n")
    with pytest.raises(ValueError, match="c.toml: 'threads'"):
        ferrule.serve(hello, config=str(path))


def test_serve_needs_a_callable():
    with pytest.raises(TypeError):
        ferrule.serve("cli_hello:app")


# --- end to end ----------------------------------------------------------------------------


def test_toml_config_end_to_end(start_server, tmp_path):
    write(
        tmp_path / "ferrule.toml",
        """
        app = "cli_hello:create_app('from toml')"
        bind = "127.0.0.1:0"
        threads = 3
        """,
    )
    srv = start_server("-c", "ferrule.toml", cwd=tmp_path, bind=False)
    srv.wait_for_log(r"Using 3 threads")
    r = requests.get(srv.url, timeout=TIMEOUT)
    assert r.json()["greeting"] == "from toml"


def test_cli_flag_overrides_config_end_to_end(start_server, tmp_path):
    write(tmp_path / "ferrule.toml", 'app = "cli_hello:app"\nthreads = 3\n')
    srv = start_server("-c", "ferrule.toml", "--threads", "6", cwd=tmp_path)
    srv.wait_for_log(r"Using 6 threads")
    assert requests.get(srv.url, timeout=TIMEOUT).text == "hello from app"


def test_seed_app_yaml_serves_the_pydev_app(start_server, tmp_path):
    # `ferrule -c app.yaml` with no TARGET; the fixture's --bind 127.0.0.1:0 overrides the
    # file's address/port, the rest (concurrency, app-loc, app-module, app) comes from the file.
    seed_yaml(tmp_path, SEED_PYDEV / "pyapp")
    srv = start_server("-c", "app.yaml", cwd=tmp_path)
    srv.wait_for_log(r"Using 5 threads")
    for path in ("/", "/health"):
        r = requests.get(srv.url + path, timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.text == "pyapp is healthy"
    assert requests.get(srv.url + "/missing", timeout=TIMEOUT).status_code == 404


def test_seed_app_yaml_with_port_from_the_command_line(start_server, tmp_path):
    # --port overrides the file's port but keeps its address (0.0.0.0).
    seed_yaml(tmp_path, SEED_PYDEV / "pyapp")
    srv = start_server("-c", "app.yaml", "--port", "0", cwd=tmp_path, bind=False)
    assert srv.host == "0.0.0.0"
    assert srv.port not in (0, 9989)
    r = requests.get(f"http://127.0.0.1:{srv.port}/health", timeout=TIMEOUT)
    assert r.text == "pyapp is healthy"
