"""Loading the WSGI app from a TARGET: parsing (in-process), import failures (exit code 4),
and TARGET forms, --chdir and --pythonpath against the real server."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import requests
from conftest import APPS, run_ferrule
from ferrule import loader

TIMEOUT = 10


# --- parse_target --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "module", "attrs", "call", "args", "kwargs"),
    [
        ("pkg.mod:app", "pkg.mod", ("app",), False, (), {}),
        ("mod", "mod", ("application",), False, (), {}),
        ("pkg.sub.mod", "pkg.sub.mod", ("application",), False, (), {}),
        ("mod:obj.attr.wsgi", "mod", ("obj", "attr", "wsgi"), False, (), {}),
        ("mod:create_app()", "mod", ("create_app",), True, (), {}),
        (
            "mod:create_app('prod', 3, debug=False, opts={'a': [1, 2]}, t=(1,), n=None)",
            "mod",
            ("create_app",),
            True,
            ("prod", 3),
            {"debug": False, "opts": {"a": [1, 2]}, "t": (1,), "n": None},
        ),
        ("mod:factories.make(-1.5)", "mod", ("factories", "make"), True, (-1.5,), {}),
        ("  mod : app  ", "mod", ("app",), False, (), {}),
    ],
)
def test_parse_target_accepts(text, module, attrs, call, args, kwargs):
    t = loader.parse_target(text)
    assert (t.module, t.attrs, t.call, t.args, t.kwargs) == (module, attrs, call, args, kwargs)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (":app", "not a module name"),
        ("my-app:app", "not a module name"),
        ("mod:", "nothing after ':'"),
        ("mod:app[0]", "not a name"),
        ("mod:1+1", "not a name"),
        ("mod:create_app(", "not a name"),
        ("mod:create_app(os.environ)", "not a literal"),
        ("mod:create_app(x=open('/etc/passwd'))", "not a literal"),
        ("mod:create_app(*args)", "*args"),
        ("mod:create_app(**kw)", "**kwargs"),
        ("mod:make()()", "not a name"),
        ("mod:__import__('os').system('true')", "not a name"),
    ],
)
def test_parse_target_rejects(text, fragment):
    with pytest.raises(ValueError) as info:
        loader.parse_target(text)
    assert fragment in str(info.value)


# --- load_app in-process -------------------------------------------------------------------


@pytest.fixture
def apps_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(APPS))


def call(app) -> bytes:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status
        return lambda data: None

    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, start_response))
    assert seen["status"] == "200 OK"
    return body


@pytest.mark.usefixtures("apps_on_path")
@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("cli_hello", b"hello from application"),
        ("cli_hello:app", b"hello from app"),
        ("cli_hello:Holder.wsgi", b"hello from Holder.wsgi"),
        ("cli_hello:holder.wsgi", b"hello from Holder.wsgi"),
        ("cli_hello:create_app()", b'{"greeting": "hi", "times": 1, "extra": null}'),
        (
            "cli_hello:create_app('hey', times=2, extra=[1, {'k': True}])",
            b'{"greeting": "hey", "times": 2, "extra": [1, {"k": true}]}',
        ),
    ],
)
def test_load_app_forms(target, body):
    assert call(loader.load_app(target)) == body


@pytest.mark.usefixtures("apps_on_path")
@pytest.mark.parametrize(
    ("target", "fragment", "has_traceback"),
    [
        ("cli_hello:nope", "has no attribute 'nope'", False),
        ("cli_hello:Holder.nope", "'cli_hello:Holder' has no attribute 'nope'", False),
        ("cli_hello:not_callable", "is not callable", False),
        ("cli_hello:make_nothing()", "is not callable", False),
        ("cli_hello:not_callable()", "cannot be called as a factory", False),
        ("cli_hello:create_app", "call it: 'cli_hello:create_app()'", False),
        ("cli_hello:broken_factory()", "the factory exploded", True),
        ("cli_raises:application", "blew up at import time", True),
        ("cli_import_error", "ferrule_tests_no_such_dependency", True),
        ("ferrule_tests_no_such_module:app", "check the current directory", True),
    ],
)
def test_load_app_failures(target, fragment, has_traceback):
    with pytest.raises(loader.AppLoadError) as info:
        loader.load_app(target)
    assert fragment in str(info.value)
    assert bool(info.value.details) == has_traceback


def test_prepare_import_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["/somewhere/else", str(tmp_path / "b")])
    (tmp_path / "sub").mkdir()
    loader.prepare_import("sub", ["a", str(tmp_path / "b")], ["/app/loc"])
    cwd = str(tmp_path / "sub")
    assert sys.path[:5] == ["/app/loc", f"{cwd}/a", str(tmp_path / "b"), cwd, "/somewhere/else"]


# --- exit code 4: the application cannot be loaded (real processes) -------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("cli_import_error", "No module named 'ferrule_tests_no_such_dependency'"),
        ("cli_raises:application", "RuntimeError: cli_raises blew up at import time"),
        ("cli_hello:broken_factory()", "RuntimeError: the factory exploded"),
    ],
)
def test_app_exception_exits_4_with_traceback(tmp_path, target, expected):
    proc = run_ferrule(target, cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback (most recent call last):" in proc.stderr
    assert expected in proc.stderr
    assert "failed to load the application" in proc.stderr


def test_app_syntax_error_exits_4(tmp_path):
    (tmp_path / "cli_broken_syntax.py").write_text("def application(environ, start_response:\n")
    proc = run_ferrule("cli_broken_syntax", cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "SyntaxError" in proc.stderr
    assert "cli_broken_syntax.py" in proc.stderr


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("cli_hello:nope", "has no attribute 'nope'"),
        ("cli_hello:not_callable", "is not callable"),
        ("ferrule_tests_no_such_module:app", "No module named 'ferrule_tests_no_such_module'"),
    ],
)
def test_missing_or_bad_app_exits_4(tmp_path, target, expected):
    proc = run_ferrule(target, cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert expected in proc.stderr


def test_check_config_loads_factory_with_literal_args(tmp_path):
    proc = run_ferrule("--check-config", "cli_hello:create_app('x', times=3)", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


# --- TARGET forms, --chdir and --pythonpath with the real server ----------------------------


def get(srv, path: str = "/") -> requests.Response:
    r = requests.get(srv.url + path, timeout=TIMEOUT)
    assert r.status_code == 200
    return r


def test_bare_module_serves_application(start_server):
    assert get(start_server("cli_hello")).text == "hello from application"


def test_attribute_path(start_server):
    assert get(start_server("cli_hello:holder.wsgi")).text == "hello from Holder.wsgi"


def test_factory_with_literal_args(start_server):
    srv = start_server("cli_hello:create_app('howdy', times=2, extra={'a': (1, 2)})")
    assert get(srv).json() == {"greeting": "howdy", "times": 2, "extra": {"a": [1, 2]}}


def write_module(directory: Path, name: str, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    source = f"""
        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [{body!r}]
    """
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_current_directory_is_on_sys_path(start_server, tmp_path):
    write_module(tmp_path, "cli_cwd_app", b"from the working directory")
    srv = start_server("cli_cwd_app", cwd=tmp_path)
    assert get(srv).text == "from the working directory"


def test_chdir(start_server, tmp_path):
    write_module(tmp_path / "project", "cli_chdir_app", b"from --chdir")
    (tmp_path / "elsewhere").mkdir()
    srv = start_server(
        "--chdir", str(tmp_path / "project"), "cli_chdir_app", cwd=tmp_path / "elsewhere"
    )
    assert get(srv).text == "from --chdir"


def test_chdir_relative_to_invocation_directory(start_server, tmp_path):
    write_module(tmp_path / "project", "cli_chdir_rel_app", b"relative --chdir")
    srv = start_server("--chdir", "project", "cli_chdir_rel_app", cwd=tmp_path)
    assert get(srv).text == "relative --chdir"


def test_pythonpath(start_server, tmp_path):
    write_module(tmp_path / "one", "cli_pp_first", b"unused")
    write_module(tmp_path / "two", "cli_pp_second", b"from --pythonpath")
    srv = start_server(
        "--pythonpath", f"{tmp_path / 'one'},{tmp_path / 'two'}", "cli_pp_second:application"
    )
    assert get(srv).text == "from --pythonpath"


def test_pythonpath_comes_before_the_current_directory(start_server, tmp_path):
    write_module(tmp_path, "cli_pp_shadow", b"from the working directory")
    write_module(tmp_path / "lib", "cli_pp_shadow", b"from --pythonpath lib")
    srv = start_server("--pythonpath", "lib", "cli_pp_shadow", cwd=tmp_path)
    assert get(srv).text == "from --pythonpath lib"
