"""Every example in examples/, started exactly as docs/examples.md tells a user to, and driven
by the clients a user would reach for: xmlrpc.client, requests, http.client, curl and the
examples' own client scripts."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import uuid
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 10  # seconds, for every client call


def serve_example(start_server, example: str, target: str, env: dict[str, str] | None = None):
    """Start `ferrule --chdir examples/<example> <target>` from the repository root."""
    return start_server("--chdir", f"examples/{example}", target, cwd=ROOT, env=env)


def run_client(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one of the examples' client scripts; fail the test if it exits non-zero."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def curl(*args: str) -> tuple[int, str]:
    """Run curl; return (status code, body). Skips the test when curl is not installed."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed")
    proc = subprocess.run(
        [exe, "--silent", "--show-error", "--max-time", str(TIMEOUT), "-w", "\n%{http_code}"]
        + list(args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
    )
    assert proc.returncode == 0, f"curl failed: {proc.stderr}"
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), body


# --- xmlrpc --------------------------------------------------------------------------------


def test_xmlrpc_calls_and_faults(start_server):
    srv = serve_example(start_server, "xmlrpc", "app:app")
    with xmlrpc.client.ServerProxy(srv.url + "/") as proxy:
        assert proxy.add(3, 4) == 7
        assert proxy.add(2.5, 0.25) == 2.75
        assert proxy.multiply(6, 7) == 42
        assert "Alice" in proxy.greeting("Alice")
        assert {"add", "multiply", "greeting"} <= set(proxy.system.listMethods())
        with pytest.raises(xmlrpc.client.Fault, match="expected a number"):
            proxy.add("three", 4)
        with pytest.raises(xmlrpc.client.Fault, match="not supported"):
            proxy.no_such_method()
        with pytest.raises(xmlrpc.client.Fault):
            proxy.add(1)  # wrong number of arguments
    # Without a path, ServerProxy posts to /RPC2, which the service answers too.
    with xmlrpc.client.ServerProxy(srv.url) as proxy:
        assert proxy.multiply(-3, 5) == -15


def test_xmlrpc_rejects_get_and_unknown_paths(start_server):
    srv = serve_example(start_server, "xmlrpc", "app:app")
    r = requests.get(srv.url + "/", timeout=TIMEOUT)
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"
    r = requests.post(srv.url + "/elsewhere", data=b"<x/>", timeout=TIMEOUT)
    assert r.status_code == 404
    # Unparsable XML is the caller's fault: it comes back as an XML-RPC Fault, not a 500.
    r = requests.post(srv.url + "/", data=b"<methodCall><broken", timeout=TIMEOUT)
    assert r.status_code == 200
    with pytest.raises(xmlrpc.client.Fault):
        xmlrpc.client.loads(r.content)


def test_xmlrpc_client_script(start_server):
    srv = serve_example(start_server, "xmlrpc", "app:app")
    out = run_client("xmlrpc/client.py", srv.url + "/").stdout
    assert "add(3, 4) = 7" in out
    assert "multiply(6, 7) = 42" in out
    assert "Alice" in out
    assert "Fault" in out


# --- bookstore -----------------------------------------------------------------------------


def test_bookstore_read(start_server):
    srv = serve_example(start_server, "bookstore", "app:app")
    with requests.Session() as http:
        r = http.get(srv.url + "/books", timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/json"
        books = r.json()
        assert [b["id"] for b in books] == [1, 2, 3]

        r = http.get(srv.url + "/books", params={"author": "Ursula K. Le Guin"}, timeout=TIMEOUT)
        assert [b["id"] for b in r.json()] == [1, 2]

        r = http.get(srv.url + "/books/3", timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.json() == books[2]

        r = http.get(srv.url + "/books/999", timeout=TIMEOUT)
        assert r.status_code == 404
        assert "error" in r.json()


def test_bookstore_create_replace_delete(start_server):
    srv = serve_example(start_server, "bookstore", "app:app")
    new = {"title": "Parable of the Sower", "author": "Octavia E. Butler", "year": 1993}
    with requests.Session() as http:
        r = http.post(srv.url + "/books", json=new, timeout=TIMEOUT)
        assert r.status_code == 201
        created = r.json()
        assert created == {"id": 4, **new}
        assert r.headers["Location"] == "/books/4"

        r = http.get(srv.url + r.headers["Location"], timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.json() == created

        replacement = {"title": "Parable of the Talents", "author": "Octavia E. Butler"}
        r = http.put(srv.url + "/books/4", json=replacement, timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.json() == {"id": 4, "year": None, **replacement}
        assert http.get(srv.url + "/books/4", timeout=TIMEOUT).json()["title"] == (
            "Parable of the Talents"
        )
        assert http.put(srv.url + "/books/77", json=replacement, timeout=TIMEOUT).status_code == 404

        r = http.delete(srv.url + "/books/4", timeout=TIMEOUT)
        assert r.status_code == 204
        assert r.content == b""
        assert http.get(srv.url + "/books/4", timeout=TIMEOUT).status_code == 404
        assert http.delete(srv.url + "/books/4", timeout=TIMEOUT).status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"title": "Unclosed', "application/json"),
        (b"", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"title": "No author here"}', "application/json"),
        (b'{"title": "T", "author": "A", "year": "nineteen"}', "application/json"),
        (b'{"title": "T", "author": "A"}', "text/plain"),
    ],
)
def test_bookstore_rejects_bad_json(start_server, body, content_type):
    srv = serve_example(start_server, "bookstore", "app:app")
    with requests.Session() as http:
        for method, path in [("POST", "/books"), ("PUT", "/books/1")]:
            r = http.request(
                method,
                srv.url + path,
                data=body,
                headers={"Content-Type": content_type},
                timeout=TIMEOUT,
            )
            assert r.status_code == 400, (method, r.text)
            assert "error" in r.json()
        # Nothing was stored or changed.
        assert len(http.get(srv.url + "/books", timeout=TIMEOUT).json()) == 3
        assert http.get(srv.url + "/books/1", timeout=TIMEOUT).json()["year"] == 1969


def test_bookstore_method_not_allowed(start_server):
    srv = serve_example(start_server, "bookstore", "app:app")
    r = requests.patch(srv.url + "/books/1", json={}, timeout=TIMEOUT)
    assert r.status_code == 405
    assert "PUT" in r.headers["Allow"]


def test_bookstore_concurrent_creates_get_distinct_ids(start_server):
    srv = start_server("--threads", "8", "--chdir", "examples/bookstore", "app:app", cwd=ROOT)

    def create(i: int) -> requests.Response:
        book = {"title": f"Book {i}", "author": "Anon"}
        return requests.post(srv.url + "/books", json=book, timeout=TIMEOUT)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(create, range(40)))
    assert all(r.status_code == 201 for r in responses)
    ids = {r.json()["id"] for r in responses}
    assert ids == set(range(4, 44))
    assert len(requests.get(srv.url + "/books", timeout=TIMEOUT).json()) == 43


def test_bookstore_factory_target(start_server):
    srv = serve_example(start_server, "bookstore", "app:create_app()")
    assert len(requests.get(srv.url + "/books", timeout=TIMEOUT).json()) == 3


def test_bookstore_with_curl(start_server):
    srv = serve_example(start_server, "bookstore", "app:app")
    status, body = curl(
        "-X",
        "POST",
        srv.url + "/books",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"title": "Dawn", "author": "Octavia E. Butler", "year": 1987}',
    )
    assert status == 201
    assert json.loads(body)["id"] == 4
    status, body = curl(srv.url + "/books/4")
    assert status == 200
    assert json.loads(body)["title"] == "Dawn"
    status, _ = curl("-X", "DELETE", srv.url + "/books/4")
    assert status == 204


def test_bookstore_client_script(start_server):
    srv = serve_example(start_server, "bookstore", "app:app")
    out = run_client("bookstore/client.py", srv.url).stdout
    assert "all responses as expected" in out
    assert "Location: /books/4" in out


# --- addition ------------------------------------------------------------------------------


def get_with_body(srv, body: bytes, method: str = "GET") -> tuple[int, dict]:
    """Send `body` with a GET (or `method`) request through http.client."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=TIMEOUT)
    try:
        conn.request(method, "/", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_addition_get_with_json_body(start_server):
    srv = serve_example(start_server, "addition", "app:app")
    assert get_with_body(srv, b'{"val_a": 2, "val_b": 3}') == (200, {"sum": 5})
    assert get_with_body(srv, b'{"val_a": 1.5, "val_b": -4}') == (200, {"sum": -2.5})
    assert get_with_body(srv, b'{"val_a": 12345678901234567890, "val_b": 1}') == (
        200,
        {"sum": 12345678901234567891},
    )


def test_addition_keeps_the_connection_for_several_sums(start_server):
    srv = serve_example(start_server, "addition", "app:app")
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=TIMEOUT)
    try:
        for a in range(5):
            body = json.dumps({"val_a": a, "val_b": 10}).encode()
            conn.request("GET", "/", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read()) == {"sum": a + 10}
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"this is not json", 400),
        (b"", 400),
        (b"[2, 3]", 400),
        (b'{"val_a": 2}', 400),
        (b'{"a": 2, "b": 3}', 400),
        (b'{"val_a": "2", "val_b": 3}', 422),
        (b'{"val_a": true, "val_b": 3}', 422),
        (b'{"val_a": 1e308, "val_b": 1e308}', 422),
    ],
)
def test_addition_rejects_bad_input(start_server, body, status):
    srv = serve_example(start_server, "addition", "app:app")
    got, payload = get_with_body(srv, body)
    assert got == status
    assert "error" in payload


def test_addition_only_answers_get(start_server):
    srv = serve_example(start_server, "addition", "app:app")
    r = requests.post(srv.url + "/", json={"val_a": 1, "val_b": 2}, timeout=TIMEOUT)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET"


def test_addition_with_curl(start_server):
    srv = serve_example(start_server, "addition", "app:app")
    status, body = curl(
        "-X",
        "GET",
        srv.url + "/",
        "-H",
        "Content-Type: application/json",
        "--data",
        '{"val_a": 40, "val_b": 2}',
    )
    assert status == 200
    assert json.loads(body) == {"sum": 42}


def test_addition_client_script(start_server):
    srv = serve_example(start_server, "addition", "app:app")
    out = run_client("addition/client.py", "19", "23", "--url", srv.url + "/").stdout
    assert out.strip() == "19 + 23 = 42"


# --- hello ---------------------------------------------------------------------------------

HELLO_APPS = [
    ("pyramidapp:app", "pyramid", "Pyramid"),
    ("flaskapp:app", "flask", "Flask"),
    ("djangoapp.wsgi:application", "django", "Django"),
    ("wsgiapp:app", None, "plain WSGI"),
]


@pytest.mark.parametrize(("target", "package", "name"), HELLO_APPS)
def test_hello_apps(start_server, target, package, name):
    if package:
        pytest.importorskip(package)
    srv = serve_example(start_server, "hello", target)
    r = requests.get(srv.url + "/hello", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.text == f"Hello, world! ({name})\n"
    # The same app answers for "localhost" too (Django checks the Host header against
    # ALLOWED_HOSTS).
    r = requests.get(f"http://localhost:{srv.port}/hello", timeout=TIMEOUT)
    assert r.status_code == 200
    assert requests.get(srv.url + "/nowhere", timeout=TIMEOUT).status_code == 404


def test_hello_pyramid_with_curl(start_server):
    pytest.importorskip("pyramid")
    srv = serve_example(start_server, "hello", "pyramidapp:app")
    status, body = curl(srv.url + "/hello")
    assert (status, body) == (200, "Hello, world! (Pyramid)\n")


# --- pydev ---------------------------------------------------------------------------------

PYDEV_YAML = EXAMPLES / "pydev" / "app.yaml"


def check_pydev(base_url: str, greeting: str = "Hello") -> None:
    for path in ("/", "/health"):
        r = requests.get(base_url + path, timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.text == "Service is healthy\n"
    r = requests.get(base_url + "/hello", params={"name": "Ada"}, timeout=TIMEOUT)
    assert r.text == f"{greeting}, Ada!\n"
    r = requests.get(base_url + "/missing", timeout=TIMEOUT)
    assert r.status_code == 404


def test_pydev_shipped_yaml_has_the_seed_keys():
    config = yaml.safe_load(PYDEV_YAML.read_text())
    assert set(config) == {
        "address",
        "port",
        "concurrency",
        "backlog",
        "timeout",
        "app-loc",
        "app-module",
        "app",
    }
    assert not Path(config["app-loc"]).is_absolute()


def test_pydev_shipped_yaml(start_server):
    # As documented: `ferrule -c examples/pydev/app.yaml` from the repository root (with the
    # fixture's --bind 127.0.0.1:0 taking precedence over the file's address and port).
    srv = start_server("-c", "examples/pydev/app.yaml", cwd=ROOT)
    check_pydev(srv.url)


def test_pydev_shipped_yaml_from_another_directory(start_server, tmp_path):
    # app-loc is relative to the YAML file, not to the working directory.
    srv = start_server("-c", str(PYDEV_YAML), cwd=tmp_path)
    check_pydev(srv.url)


def test_pydev_shipped_yaml_address_and_port(start_server):
    config = yaml.safe_load(PYDEV_YAML.read_text())
    host, port = config["address"], config["port"]
    with socket.socket() as probe:
        # Like the server, ignore connections of an earlier run lingering in TIME_WAIT.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            pytest.skip(f"port {port} from app.yaml is in use on this machine")
    srv = start_server("-c", "examples/pydev/app.yaml", cwd=ROOT, bind=False)
    assert srv.port == port
    check_pydev(f"http://{host}:{port}")


def test_pydev_yaml_copy_with_absolute_app_loc(start_server, tmp_path):
    config = yaml.safe_load(PYDEV_YAML.read_text())
    config.update({"address": "127.0.0.1", "port": 0, "app-loc": str(EXAMPLES / "pydev" / "pyapp")})
    copied = tmp_path / "app.yaml"
    copied.write_text(yaml.safe_dump(config, sort_keys=False))
    srv = start_server("-c", str(copied), cwd=tmp_path, bind=False)
    assert srv.host == "127.0.0.1"
    assert srv.port != 0
    check_pydev(srv.url)


def test_pydev_settings_module_from_environment(start_server):
    srv = start_server(
        "-c",
        "examples/pydev/app.yaml",
        cwd=ROOT,
        env={"PYDEV_SETTINGS_MODULE": "pyapp.settings_fr"},
    )
    check_pydev(srv.url, greeting="Bonjour")
    r = requests.get(srv.url + "/hello", timeout=TIMEOUT)
    assert r.headers["X-Settings-Module"] == "pyapp.settings_fr"


# --- environ -------------------------------------------------------------------------------


def parse_environ_dump(text: str) -> tuple[dict[str, str], str]:
    """Split the dump into {KEY: repr(value)} and its trailing body-length line."""
    dump, _, tail = text.partition("\n\n")
    entries = dict(line.split(" = ", 1) for line in dump.splitlines())
    assert list(entries) == sorted(entries), "keys are not sorted"
    return entries, tail.strip()


def test_environ_dump(start_server):
    srv = serve_example(start_server, "environ", "app:app")
    body = b"name=ferrule&kind=server"
    r = requests.post(
        srv.url + "/some/path",
        params={"x": "1", "y": "two words"},
        data=body,
        headers={"X-Demo": "yes", "Content-Type": "application/x-www-form-urlencoded"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    env, tail = parse_environ_dump(r.text)
    assert tail == f"request body: {len(body)} bytes"
    assert env["REQUEST_METHOD"] == "'POST'"
    assert env["PATH_INFO"] == "'/some/path'"
    assert env["QUERY_STRING"] == "'x=1&y=two+words'"
    assert env["CONTENT_LENGTH"] == repr(str(len(body)))
    assert env["CONTENT_TYPE"] == "'application/x-www-form-urlencoded'"
    assert env["HTTP_X_DEMO"] == "'yes'"
    assert env["HTTP_HOST"] == repr(f"127.0.0.1:{srv.port}")
    assert env["SERVER_PORT"] == repr(str(srv.port))
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["wsgi.version"] == "(1, 0)"
    assert env["wsgi.url_scheme"] == "'http'"
    for key in ("SCRIPT_NAME", "SERVER_NAME", "SERVER_PROTOCOL", "wsgi.input", "wsgi.errors"):
        assert key in env
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert env[key] in ("True", "False")


def test_environ_bare_module_target(start_server):
    # `ferrule app` means `app:application`, which the environ example also provides.
    srv = serve_example(start_server, "environ", "app")
    env, tail = parse_environ_dump(requests.get(srv.url + "/", timeout=TIMEOUT).text)
    assert env["REQUEST_METHOD"] == "'GET'"
    assert tail == "request body: 0 bytes"


def test_environ_dump_large_body_with_curl(start_server, tmp_path):
    srv = serve_example(start_server, "environ", "app:app")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    status, text = curl("--data-binary", f"@{payload}", srv.url + "/upload")
    assert status == 200
    env, tail = parse_environ_dump(text)
    assert tail == f"request body: {1024 * 1024} bytes"
    assert env["REQUEST_METHOD"] == "'POST'"


# --- middleware ----------------------------------------------------------------------------


def test_middleware_wraps_simple_app(start_server):
    srv = serve_example(start_server, "middleware", "app:app")
    path = f"/hello/{uuid.uuid4().hex}"
    r = requests.get(srv.url + path, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.text == f"HELLO, WORLD!\nYOU ASKED FOR {path.upper()}\n"
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert re.fullmatch(r"app;dur=\d+\.\d{3}", r.headers["Server-Timing"])
    # The timing middleware logs each finished request through wsgi.errors.
    srv.wait_for_log(rf"GET {re.escape(path)} -> 200 OK in \d+\.\d\d ms")


def test_middleware_simple_app_alone(start_server):
    srv = serve_example(start_server, "middleware", "simple_app:simple_app")
    r = requests.get(srv.url + "/plain", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.text == "Hello, World!\nYou asked for /plain\n"
    assert "Server-Timing" not in r.headers
