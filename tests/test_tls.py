"""TLS (issue 7): rustls in the core, tried with curl and Python's ssl, with certificates the
tests generate (trustme): HTTPS GET/POST/streams/sendfile, keep-alive, ALPN, client
certificates, SIGHUP reloading the certificate (single process and workers), handshake
timeouts, and a plain-HTTP client on the TLS port.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys

import pytest
import trustme
from conftest import wait_until

pytestmark = pytest.mark.timeout(60)

APP = "tls_app:app"


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for localhost/127.0.0.1, and paths to their PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(files["cert"]), append=True)
    server.private_key_pem.write_to_path(str(files["key"]))
    return ca, files


def context(ca_file, alpn=("http/1.1",)) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def https(srv, ctx, method="GET", path="/", body=None, host="localhost"):
    conn = http.client.HTTPSConnection(host, srv.port, context=ctx, timeout=10)
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    return conn, resp, resp.read()


def start_tls(start_server, files, *args, **kwargs):
    return start_server(
        "--certfile", str(files["cert"]), "--keyfile", str(files["key"]), *args, **kwargs
    )


def test_https_with_python_ssl(start_server, pki):
    _, files = pki
    srv = start_tls(start_server, files, APP)
    assert srv.url.startswith("https://127.0.0.1:")
    ctx = context(files["ca"])
    conn, resp, body = https(srv, ctx)
    assert resp.status == 200
    got = json.loads(body)
    assert (got["wsgi.url_scheme"], got["REMOTE_ADDR"]) == ("https", "127.0.0.1")
    assert conn.sock.selected_alpn_protocol() == "http/1.1"
    assert conn.sock.version() in ("TLSv1.3", "TLSv1.2")
    # Keep-alive: more requests on the same TLS connection, from the same client port.
    port = got["REMOTE_PORT"]
    for _ in range(5):
        conn.request("GET", "/")
        assert json.loads(conn.getresponse().read())["REMOTE_PORT"] == port
    # A 3 MiB upload and a chunked stream on it too.
    payload = os.urandom(3 << 20)
    conn.request("POST", "/echo", body=payload)
    assert conn.getresponse().read().decode() == hashlib.sha256(payload).hexdigest()
    conn.request("GET", "/stream")
    resp = conn.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.read() == b"".join(f"line {i}\n".encode() for i in range(1000))
    conn.close()


def test_https_with_curl(start_server, pki, tmp_path):
    _, files = pki
    srv = start_tls(start_server, files, "--access-log", APP)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 << 20))
    url = f"https://localhost:{srv.port}"
    out = subprocess.run(
        ["curl", "-sS", "--fail", "--cacert", str(files["ca"]), f"{url}/", f"{url}/"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    first, second = (json.loads(x) for x in out.stdout.replace("}{", "}\n{").splitlines())
    assert first["wsgi.url_scheme"] == "https"
    assert first["REMOTE_PORT"] == second["REMOTE_PORT"], "curl reused the connection"
    # A file sent with sendfile through the plaintext pair, checked whole.
    out = subprocess.run(
        ["curl", "-sS", "--fail", "--cacert", str(files["ca"]), f"{url}/file?{big}"],
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(big.read_bytes()).digest()
    # An untrusted certificate is refused by curl (the server is really presenting it).
    out = subprocess.run(["curl", "-sS", f"{url}/"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 60, out


def test_client_certificates(start_server, pki, tmp_path):
    ca, files = pki
    srv = start_tls(start_server, files, "--ca-certs", str(files["ca"]), APP)
    ctx = context(files["ca"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        conn, resp, _ = https(srv, ctx)  # no client certificate
    client = ca.issue_cert("client@example.test")
    client.configure_cert(ctx)
    conn, resp, body = https(srv, ctx)
    assert resp.status == 200 and json.loads(body)["wsgi.url_scheme"] == "https"
    conn.close()
    # A certificate from another CA is refused.
    other = trustme.CA().issue_cert("intruder@example.test")
    ctx = context(files["ca"])
    other.configure_cert(ctx)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(srv, ctx)


def served_issuer(port: int, ca_file) -> str:
    """The issuer of the certificate a new connection gets (verified against `ca_file`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context(ca_file).wrap_socket(raw, server_hostname="localhost") as tls:
            return str(tls.getpeercert()["issuer"])


@pytest.mark.parametrize("workers", [1, 2], ids=["single-process", "workers"])
def test_sighup_reloads_the_certificate(start_server, pki, tmp_path, workers):
    _, files = pki
    srv = start_tls(start_server, files, "-w", str(workers), APP)
    if workers > 1:
        srv.wait_for_log(r"Ready: 2 workers serving")
    before = served_issuer(srv.port, files["ca"])
    # A new CA and certificate, written over the old files.
    new_ca = trustme.CA(organization_name="Reloaded CA")
    new = new_ca.issue_cert("localhost", "127.0.0.1")
    files["cert"].write_bytes(b"".join(b.bytes() for b in new.cert_chain_pems))
    files["key"].write_bytes(new.private_key_pem.bytes())
    new_ca_file = tmp_path / "new-ca.pem"
    new_ca.cert_pem.write_to_path(str(new_ca_file))
    srv.signal(signal.SIGHUP)

    def reloaded():
        try:
            return "Reloaded CA" in served_issuer(srv.port, new_ca_file)
        except (ssl.SSLError, OSError):
            return False

    wait_until(reloaded, timeout=15, what="the new certificate")
    assert "Reloaded CA" not in before
    assert srv.proc.poll() is None


def test_a_bad_key_is_refused_at_start(start_server, pki, tmp_path):
    _, files = pki
    bad = tmp_path / "bad.key"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    srv = start_server("--certfile", str(files["cert"]), "--keyfile", str(bad), APP, ready=False)
    assert srv.proc.wait(10) != 0
    srv.wait_for_log(r"keyfile .*bad\.key")


def test_plain_http_and_silent_clients_do_not_hurt(start_server, pki):
    _, files = pki
    srv = start_tls(start_server, files, "--header-timeout", "1", APP)
    # Plain HTTP on the TLS port: the handshake fails and the connection closes.
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert not data.startswith(b"HTTP/1.1 200")
    # A client that never starts the handshake is closed after --header-timeout.
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        assert s.recv(1) == b""
    _, resp, _ = https(srv, context(files["ca"]))
    assert resp.status == 200


def test_max_connections_holds_tls_clients_in_the_backlog(start_server, pki):
    """--max-connections bounds TLS connections as it bounds plain ones: with 2 open, a
    third is not accepted (its handshake waits in the listen backlog) until one closes."""
    _, files = pki
    srv = start_tls(start_server, files, "--max-connections", "2", "--keep-alive", "30", APP)
    ctx = context(files["ca"])
    held = []
    for _ in range(2):
        conn, resp, _ = https(srv, ctx)
        assert resp.status == 200
        held.append(conn)
    raw = socket.create_connection((srv.host, srv.port), timeout=5)
    try:
        raw.settimeout(0.8)
        tls = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        with pytest.raises(TimeoutError):
            tls.do_handshake()  # no ServerHello: the server has not accepted it
        srv.wait_for_log(r"2 TLS connections open \(max_connections\)")
        held.pop().close()
        tls.settimeout(5)
        tls.do_handshake()
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ")
    finally:
        raw.close()
        for conn in held:
            conn.close()


def test_default_tls_connection_limit_follows_the_open_files_limit(start_server, pki):
    """Under `ulimit -n 128` a TLS connection holds three descriptors, so the default limit
    is a third of the plain one: (128 - 32) / 3 = 32. 40 clients do not exhaust the file
    table; the last 8 wait in the backlog and are served once others leave."""
    _, files = pki
    command = ["prlimit", "--nofile=128:128", "--", sys.executable, "-m", "ferrule"]
    srv = start_tls(start_server, files, "--keep-alive", "30", APP, command=command)
    ctx = context(files["ca"])
    held = []
    waiting = []
    try:
        for _ in range(32):
            conn, resp, _ = https(srv, ctx)
            assert resp.status == 200
            held.append(conn)
        for _ in range(8):
            raw = socket.create_connection((srv.host, srv.port), timeout=5)
            tls = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
            tls.settimeout(0.3)
            with pytest.raises(TimeoutError):
                tls.do_handshake()
            waiting.append(tls)
        for conn in held[:8]:
            conn.close()
        for tls in waiting:
            tls.settimeout(5)
            tls.do_handshake()
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert tls.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for conn in held:
            conn.close()
        for tls in waiting:
            tls.close()
    assert "Too many open files" not in srv.log
    assert "32 TLS connections open (max_connections)" in srv.log


def test_graceful_stop_finishes_tls_requests(start_server, pki):
    _, files = pki
    srv = start_tls(start_server, files, APP)
    ctx = context(files["ca"])
    conn = http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=10)
    payload = os.urandom(1 << 20)
    conn.request("POST", "/echo", body=payload)
    srv.signal(signal.SIGTERM)
    assert conn.getresponse().read().decode() == hashlib.sha256(payload).hexdigest()
    assert srv.proc.wait(10) == 0
