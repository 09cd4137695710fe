"""Real Flask, Django, Pyramid, Bottle and Falcon apps under ferrule.

Each app lives in tests/apps/fw_<name>.py, serves the routes listed in tests/apps/fw_common.py,
and is wrapped in wsgiref.validate.validator, so any PEP 3333 slip by the server (or the app)
turns into a failed assertion and a 500 that these tests notice.
"""

from __future__ import annotations

import http.client
import socket
import uuid

import pytest
import requests

TIMEOUT = 10  # seconds, for every client call
FRAMEWORKS = ["flask", "django", "pyramid", "bottle", "falcon"]


@pytest.fixture(params=FRAMEWORKS)
def framework(request) -> str:
    pytest.importorskip(request.param)
    return request.param


@pytest.fixture
def server(start_server, framework):
    # Several threads: the streaming test needs a second request while the first one waits.
    return start_server("--threads", "4", f"fw_{framework}:app")


def test_query_string(server):
    r = requests.get(
        server.url + "/query",
        params=[("name", "Jürgen Ω"), ("tag", "a"), ("tag", "b&c=d")],
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "Jürgen Ω", "tags": ["a", "b&c=d"]}


def test_query_string_absent(server):
    r = requests.get(server.url + "/query", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": None, "tags": []}


def test_post_form(server):
    fields = {"title": "Dune", "note": "a&b=c d", "accent": "é"}
    r = requests.post(server.url + "/form", data=fields, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json() == {"fields": fields}


def test_post_json(server):
    payload = {"numbers": list(range(20_000)), "text": "ünïcode ✓", "nested": {"ok": True}}
    r = requests.post(server.url + "/json", json=payload, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["received"] == payload
    assert data["content_length"] == len(r.request.body)


def test_streamed_response(server):
    """The first chunk reaches the client while the app is still blocked before the second."""
    gate = uuid.uuid4().hex
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", f"/stream?n=4&gate={gate}")
        try:
            response = conn.getresponse()
            first = response.readline()
        except socket.timeout:  # TimeoutError from Python 3.10 on
            pytest.fail("chunk 0 did not arrive while the app was blocked: the body was buffered")
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/plain")
        assert first == b"chunk 0\n"
        # Only now let the app go on; a server that buffered the body would still be waiting.
        r = requests.get(server.url + "/release", params={"gate": gate}, timeout=TIMEOUT)
        assert r.status_code == 200
        assert response.read() == b"chunk 1\nchunk 2\nchunk 3\n"
    finally:
        conn.close()


def test_streamed_response_without_gate(server):
    r = requests.get(server.url + "/stream", params={"n": 200}, stream=True, timeout=TIMEOUT)
    assert r.status_code == 200
    body = b"".join(r.iter_content(chunk_size=None))
    assert body == b"".join(f"chunk {i}\n".encode() for i in range(200))


def test_headers_in_and_out(server, framework):
    r = requests.get(server.url + "/headers", headers={"X-Token": "t0k3n"}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json() == {"token": "t0k3n"}
    assert r.headers["X-Framework"] == framework
    assert r.headers["X-Echo-Token"] == "t0k3n"


def test_not_found(server):
    r = requests.get(server.url + "/no/such/page", timeout=TIMEOUT)
    assert r.status_code == 404


def test_app_error_is_a_500(server, framework):
    r = requests.get(server.url + "/boom", timeout=TIMEOUT)
    assert r.status_code == 500
    assert "fw-boom" not in r.text  # no traceback leaks to the client
    if framework == "pyramid":
        # Pyramid lets the exception escape the WSGI app: the server answers and logs it.
        server.wait_for_log(r"fw-boom from pyramid")
    # The server is still serving after the error.
    r = requests.get(server.url + "/query", params={"name": "after"}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json()["name"] == "after"
