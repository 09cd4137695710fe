"""Trusted proxies (issue 7): forwarding headers and the PROXY protocol, over raw sockets.

`--forwarded-allow-ips` says whose `Forwarded` / `X-Forwarded-*` headers set `REMOTE_ADDR`
and `wsgi.url_scheme`; `--proxy-protocol` reads HAProxy's PROXY header (v1 and v2) before the
first request. (tests/test_proxies.py does the same behind real nginx and HAProxy.)
"""

from __future__ import annotations

import json
import socket
import struct

import pytest
from hostile_client import Client, request

pytestmark = pytest.mark.timeout(60)

APP = "forwarded_app:app"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def ask(srv, headers: dict[str, str] | None = None, prefix: bytes = b"") -> dict:
    with Client.to(srv, 5) as c:
        c.send(prefix + request("GET", "/", headers=list((headers or {}).items())))
        r = c.response()
    assert r.status == 200, r
    return json.loads(r.body)


def test_x_forwarded_from_a_trusted_peer(start_server):
    srv = start_server(APP)  # the default trusts 127.0.0.1 and ::1
    got = ask(srv, {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert (got["REMOTE_ADDR"], got["wsgi.url_scheme"]) == ("203.0.113.9", "https")
    assert got["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"
    plain = ask(srv)
    assert (plain["REMOTE_ADDR"], plain["wsgi.url_scheme"]) == ("127.0.0.1", "http")


def test_headers_from_an_untrusted_peer_change_nothing(start_server):
    srv = start_server("--forwarded-allow-ips", "10.0.0.0/8,192.0.2.1", APP)
    got = ask(srv, {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert (got["REMOTE_ADDR"], got["wsgi.url_scheme"]) == ("127.0.0.1", "http")
    got = ask(srv, {"Forwarded": "for=203.0.113.9;proto=https"})
    assert (got["REMOTE_ADDR"], got["wsgi.url_scheme"]) == ("127.0.0.1", "http")


def test_a_client_cannot_spoof_past_the_proxies(start_server):
    srv = start_server("--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8", APP)
    got = ask(srv, {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.2.3"})
    assert got["REMOTE_ADDR"] == "203.0.113.9"
    got = ask(srv, {"X-Forwarded-For": "10.9.9.9, 10.1.2.3"})
    assert got["REMOTE_ADDR"] == "10.9.9.9", "all trusted: the leftmost"


def test_rfc7239_forwarded_wins_over_x_forwarded(start_server):
    srv = start_server("--forwarded-allow-ips", "*", APP)
    got = ask(
        srv,
        {
            "X-Forwarded-For": "198.51.100.1",
            "Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1',
        },
    )
    assert (got["REMOTE_ADDR"], got["wsgi.url_scheme"]) == ("2001:db8:cafe::17", "https")


def test_x_forwarded_ssl_and_protocol_set_the_scheme_and_conflicts_are_refused(start_server):
    """gunicorn's other secure-scheme headers: `X-Forwarded-Ssl: on` and
    `X-Forwarded-Protocol: ssl` mean https. Scheme headers that disagree get a 400 and a
    close (gunicorn's InvalidSchemeHeaders), from a trusted peer; from another peer they
    change nothing and refuse nothing."""
    srv = start_server(APP)
    assert ask(srv, {"X-Forwarded-Ssl": "on"})["wsgi.url_scheme"] == "https"
    assert ask(srv, {"X-Forwarded-Protocol": "ssl"})["wsgi.url_scheme"] == "https"
    got = ask(srv, {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"})
    assert got["wsgi.url_scheme"] == "https"
    assert ask(srv, {"X-Forwarded-Ssl": "off"})["wsgi.url_scheme"] == "http"
    for conflict in (
        {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"},
        {"X-Forwarded-Protocol": "ssl", "X-Forwarded-Proto": "http"},
    ):
        with Client.to(srv, 5) as c:
            c.send(request("GET", "/", headers=list(conflict.items())))
            r = c.response()
            assert r.status == 400, (conflict, r)
            assert c.closed_within(5)
    untrusted = start_server("--forwarded-allow-ips", "10.0.0.0/8", APP)
    got = ask(untrusted, {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"})
    assert got["wsgi.url_scheme"] == "http"


def test_an_empty_allow_list_turns_it_off(start_server):
    srv = start_server("--forwarded-allow-ips", "", APP)
    got = ask(srv, {"X-Forwarded-For": "203.0.113.9"})
    assert got["REMOTE_ADDR"] == "127.0.0.1"


def test_bad_allow_list_is_a_usage_error(start_server):
    srv = start_server("--forwarded-allow-ips", "localhost", APP, ready=False)
    assert srv.proc.wait(10) == 2
    srv.wait_for_log(r"--forwarded-allow-ips.*'localhost' is not an IP address")


def test_the_access_log_names_the_forwarded_client(start_server, tmp_path):
    log = tmp_path / "access.log"
    srv = start_server("--access-logfile", str(log), APP)
    ask(srv, {"X-Forwarded-For": "203.0.113.9"})
    srv.stop()
    assert log.read_text().startswith("203.0.113.9 - - [")


# --- PROXY protocol ---------------------------------------------------------------------------


def read_to_end(c: Client) -> bytes:
    data = b""
    while chunk := c.sock.recv(4096):
        data += chunk
    return data


def v2_header(command: int, family: int, addresses: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(addresses))


def v2_inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return v2_header(1, 0x11, addrs) + addrs


def test_proxy_protocol_v1_and_v2(start_server):
    srv = start_server("--proxy-protocol", APP)
    got = ask(srv, prefix=b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n")
    assert (got["REMOTE_ADDR"], got["REMOTE_PORT"]) == ("192.0.2.1", "56324")
    got = ask(srv, prefix=b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n")
    assert (got["REMOTE_ADDR"], got["REMOTE_PORT"]) == ("2001:db8::1", "4000")
    got = ask(srv, prefix=v2_inet("198.51.100.7", "10.0.0.1", 1234, 80))
    assert (got["REMOTE_ADDR"], got["REMOTE_PORT"]) == ("198.51.100.7", "1234")
    # LOCAL (a balancer's health check) and UNKNOWN keep the real peer.
    assert ask(srv, prefix=v2_header(0, 0, b""))["REMOTE_ADDR"] == "127.0.0.1"
    assert ask(srv, prefix=b"PROXY UNKNOWN\r\n")["REMOTE_ADDR"] == "127.0.0.1"
    # The header comes once per connection; keep-alive requests after it keep the client.
    with Client.to(srv, 5) as c:
        c.send(b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" + request("GET", "/"))
        assert json.loads(c.response().body)["REMOTE_ADDR"] == "192.0.2.1"
        c.send(request("GET", "/"))
        assert json.loads(c.response().body)["REMOTE_ADDR"] == "192.0.2.1"
    # Byte by byte, it still parses.
    with Client.to(srv, 5) as c:
        assert c.send_pieces([bytes([b]) for b in v2_inet("198.51.100.9", "10.0.0.1", 9, 80)])
        c.send(request("GET", "/"))
        assert json.loads(c.response().body)["REMOTE_ADDR"] == "198.51.100.9"


@pytest.mark.parametrize(
    "opening",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n",
        b"PROXY TCP4 ::1 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 " + b"1" * 120,
        V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12),  # UDP
    ],
    ids=["no-header", "missing-field", "family-mismatch", "too-long", "v2-udp"],
)
def test_proxy_protocol_refusals_close_without_an_answer(start_server, opening):
    srv = start_server("--proxy-protocol", APP)
    with Client.to(srv, 5) as c:
        c.send(opening)
        assert read_to_end(c) == b""
    srv.wait_for_log("Closed a connection from 127.0.0.1: ")
    assert ask(srv, prefix=b"PROXY UNKNOWN\r\n")["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_protocol_from_an_untrusted_peer_is_refused(start_server):
    srv = start_server("--proxy-protocol", "--forwarded-allow-ips", "10.0.0.1", APP)
    with Client.to(srv, 5) as c:
        c.send(b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" + request("GET", "/"))
        assert read_to_end(c) == b""
    srv.wait_for_log("not in forwarded_allow_ips")
