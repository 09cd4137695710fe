"""Request smuggling: every ambiguous framing is refused, or handled one unambiguous way
(issue 6).

Modelled on the public smuggling scanners (defparam's smuggler, PortSwigger's HTTP Request
Smuggler): a Transfer-Encoding header in each of their obfuscations is placed beside a
Content-Length, before and after it, in the two attack shapes:

- CL.TE: Content-Length covers the whole body; read as chunked, the body ends early and a
  second request (`GET /smuggled-...`) follows it.
- TE.CL: the chunked body is complete; read by Content-Length (4 bytes), the rest of it
  (`GPOST /smuggled-...`) becomes a second request.

Whatever the server does, a smuggled request must never reach the app (the app logs every
request it sees: ``ECHO <method> <target>``), the client must get exactly one response
(a refusal, then the connection closes), and nothing may hang. Refusals are logged in the
access log with their status.

Bad chunk sizes and extensions, bare CR/LF in header values and NUL bytes in the request
line are refused too. (test_http11.py covers the plain cases: CL+TE, duplicate and listed
Content-Length, `chunked` not last, basic bad chunk framing; this file covers the
obfuscations.)
"""

from __future__ import annotations

import json

import pytest
from conftest import ServerProcess, shared_server, token
from hostile_client import Client, Closed, assert_no_findings, wait_for_log_after

TIMEOUT = 3.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with shared_server(tmp_path_factory, "smuggling", "--access-log", "hostile_echo:app") as s:
        yield s


def assert_refused(srv: ServerProcess, data: bytes, smuggled: str = "") -> int:
    """`data` gets exactly one response, a 4xx/5xx with Connection: close, then the server
    closes; the refusal is in the access log; `smuggled` never reached the app."""
    mark = len(srv.log)
    with Client.to(srv, TIMEOUT) as c:
        c.send(data)
        try:
            r = c.response(timeout=TIMEOUT)
        except Closed as e:
            raise AssertionError(f"closed without a response to {data[:300]!r}") from e
        except TimeoutError as e:
            raise AssertionError(f"no response within {TIMEOUT}s to {data[:300]!r}") from e
        assert r.status >= 400, f"{data[:300]!r} was accepted: {r.status} {r.body[:300]!r}"
        assert r.has_token("Connection", "close"), f"a {r.status} without Connection: close"
        assert c.closed_within(TIMEOUT), f"the connection stayed open after {r.status}"
    wait_for_log_after(srv, mark, rf'" {r.status} ', timeout=TIMEOUT)
    if smuggled:
        assert smuggled not in srv.log, f"the smuggled request {smuggled} reached the app"
    return r.status


# --- Transfer-Encoding obfuscations beside a Content-Length ---------------------------------

# Each is a header line (or lines) that some parser somewhere reads as
# "Transfer-Encoding: chunked". The line before it ends in CRLF unless it starts with "\n".
TE_OBFUSCATIONS = {
    "plain": b"Transfer-Encoding: chunked",
    "lower-name": b"transfer-encoding: chunked",
    "upper": b"TRANSFER-ENCODING: CHUNKED",
    "mixed-case": b"TrAnSfEr-EnCoDiNg: cHuNkEd",
    "no-space": b"Transfer-Encoding:chunked",
    "tab-before-value": b"Transfer-Encoding:\tchunked",
    "tab-after-value": b"Transfer-Encoding: chunked\t",
    "spaces-around-value": b"Transfer-Encoding:   chunked   ",
    "space-before-colon": b"Transfer-Encoding : chunked",
    "tab-before-colon": b"Transfer-Encoding\t: chunked",
    "leading-space": b" Transfer-Encoding: chunked",
    "leading-tab": b"\tTransfer-Encoding: chunked",
    "folded-value": b"Transfer-Encoding:\r\n chunked",
    "folded-after-x": b"X-Padding: x\r\n Transfer-Encoding: chunked",
    "vtab-value": b"Transfer-Encoding:\x0bchunked",
    "formfeed-value": b"Transfer-Encoding:\x0cchunked",
    "nul-in-value": b"Transfer-Encoding: chunked\x00",
    "nul-in-name": b"Transfer-Encoding\x00: chunked",
    "cr-in-value": b"Transfer-Encoding: \rchunked",
    "bare-lf-before": b"\nTransfer-Encoding: chunked",
    "bare-lf-in-x": b"X-Padding: x\nTransfer-Encoding: chunked",
    "high-byte-name": b"Transfer-Encoding\xff: chunked",
    "high-byte-value": b"Transfer-Encoding: chunked\xff",
    "quoted": b'Transfer-Encoding: "chunked"',
    "single-quoted": b"Transfer-Encoding: 'chunked'",
    "xchunked": b"Transfer-Encoding: xchunked",
    "chunkedx": b"Transfer-Encoding: chunkedx",
    "chunk": b"Transfer-Encoding: chunk",
    "chunked-semicolon": b"Transfer-Encoding: chunked;",
    "chunked-param": b"Transfer-Encoding: chunked; q=1",
    "identity-chunked": b"Transfer-Encoding: identity, chunked",
    "chunked-identity": b"Transfer-Encoding: chunked, identity",
    "gzip-chunked": b"Transfer-Encoding: gzip,chunked",
    "chunked-chunked": b"Transfer-Encoding: chunked, chunked",
    "empty-element": b"Transfer-Encoding: , chunked",
    "two-fields": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    "identity-then-chunked": b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
    "chunked-then-x": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x",
    "empty-then-chunked": b"Transfer-Encoding:\r\nTransfer-Encoding: chunked",
    "chunked-then-empty": b"Transfer-Encoding: chunked\r\nTransfer-Encoding:",
}


def cl_te(te: bytes, te_first: bool, smuggled: str) -> bytes:
    """CL.TE: Content-Length covers everything; chunked, the body ends after `0`."""
    body = f"0\r\n\r\nGET {smuggled} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    cl = b"Content-Length: %d" % len(body)
    fields = [te, cl] if te_first else [cl, te]
    return head_with(fields) + body


def te_cl(te: bytes, te_first: bool, smuggled: str) -> bytes:
    """TE.CL: the chunked body is complete; by Content-Length (4) it ends after `5c\\r\\n`
    and the rest starts a second request."""
    inner = f"GPOST {smuggled} HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\nx=1".encode()
    body = b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"
    fields = [te, b"Content-Length: 4"] if te_first else [b"Content-Length: 4", te]
    return head_with(fields) + body


def head_with(fields: list[bytes]) -> bytes:
    out = b"POST /smuggle HTTP/1.1\r\nHost: hostile.test"
    for f in fields:
        out += f if f.startswith(b"\n") else b"\r\n" + f
    return out + b"\r\n\r\n"


@pytest.mark.parametrize("te_first", [True, False], ids=["te-first", "cl-first"])
@pytest.mark.parametrize("shape", [cl_te, te_cl], ids=["CL.TE", "TE.CL"])
@pytest.mark.parametrize("te", list(TE_OBFUSCATIONS.values()), ids=list(TE_OBFUSCATIONS))
def test_te_obfuscation_beside_content_length_is_refused(srv, te, shape, te_first):
    smuggled = f"/smuggled-{token()}"
    assert_refused(srv, shape(te, te_first, smuggled), smuggled)


# Content-Length obfuscations beside a plain Transfer-Encoding: chunked.
CL_OBFUSCATIONS = {
    "plus": b"Content-Length: +35",
    "leading-zero": b"Content-Length: 035",
    "space-before-colon": b"Content-Length : 35",
    "leading-space": b" Content-Length: 35",
    "list": b"Content-Length: 35, 35",
    "lower": b"content-length: 35",
    "two-fields": b"Content-Length: 35\r\nContent-Length: 35",
    "hex": b"Content-Length: 0x23",
}


@pytest.mark.parametrize("cl", list(CL_OBFUSCATIONS.values()), ids=list(CL_OBFUSCATIONS))
def test_content_length_obfuscation_beside_chunked_is_refused(srv, cl):
    smuggled = f"/smuggled-{token()}"
    body = f"0\r\n\r\nGET {smuggled} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert_refused(srv, head_with([b"Transfer-Encoding: chunked", cl]) + body, smuggled)


# Fields that are not Transfer-Encoding by any reading: the Content-Length frames the body,
# the one response echoes all of it, and the connection stays usable.
NOT_TRANSFER_ENCODING = {
    "underscore-name": b"Transfer_Encoding: chunked",  # dropped (never HTTP_TRANSFER_ENCODING)
    "x-prefixed": b"X-Transfer-Encoding: chunked",
    "content-encoding": b"Content-Encoding: chunked",
    "te-field": b"TE: chunked",
}


@pytest.mark.parametrize("field", list(NOT_TRANSFER_ENCODING.values()), ids=NOT_TRANSFER_ENCODING)
def test_decoy_fields_leave_content_length_in_charge(srv, field):
    smuggled = f"/smuggled-{token()}"
    data = cl_te(field, True, smuggled)
    body = data.split(b"\r\n\r\n", 1)[1]
    with Client.to(srv, TIMEOUT) as c:
        c.send(data)
        r = c.response(timeout=TIMEOUT)
        assert r.status == 200, r.body[:300]
        assert json.loads(r.body)["body"] == body.decode(), "the body was not framed by length"
        c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response(timeout=TIMEOUT)
        assert json.loads(r.body)["path"] == "/after", "a second response came in between"
    assert smuggled not in srv.log


# --- chunk sizes and extensions ---------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5_\r\nhello\r\n0\r\n\r\n",
        b"5\x00\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\rhello\r\n0\r\n\r\n",
        b"g\r\nhello\r\n0\r\n\r\n",
        b"10000000000000000\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n-0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n",  # no final CRLF (the client then half-closes)
        b"5\r\nhello\r\n\r\n0\r\n\r\n",
        b"5;\r\nhello\r\n0\r\n\r\n",
        b"5;=1\r\nhello\r\n0\r\n\r\n",
        b"5;a b\r\nhello\r\n0\r\n\r\n",
        b'5;a="open\r\nhello\r\n0\r\n\r\n',
        b"5;a=1\nhello\r\n0\r\n\r\n",
        b"5;a=1\rb\r\nhello\r\n0\r\n\r\n",
        b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
        b"5;" + b"a" * 100_000 + b"\r\nhello\r\n0\r\n\r\n",
    ],
    ids=[
        "leading-space",
        "plus",
        "0x",
        "trailing-underscore",
        "nul-after-size",
        "space-then-crlf",
        "bare-cr",
        "not-hex",
        "over-64-bits",
        "minus-zero-last",
        "no-final-crlf",
        "empty-line-between",
        "ext-empty",
        "ext-no-name",
        "ext-space-in-name",
        "ext-open-quote",
        "ext-bare-lf",
        "ext-bare-cr",
        "ext-control",
        "ext-100k",
    ],
)
def test_bad_chunk_size_or_extension_is_refused(srv, chunks):
    smuggled = f"/smuggled-{token()}"
    data = head_with([b"Transfer-Encoding: chunked"]) + chunks
    data += f"GET {smuggled} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    if chunks.endswith(b"0\r\n"):  # the smuggled request would complete the body: drop it
        data = head_with([b"Transfer-Encoding: chunked"]) + chunks
    mark = len(srv.log)
    with Client.to(srv, TIMEOUT) as c:
        c.send(data)
        c.shutdown_write()
        try:
            r = c.response(timeout=TIMEOUT)
        except Closed as e:
            raise AssertionError("closed without a response") from e
        except TimeoutError as e:
            raise AssertionError(f"no response within {TIMEOUT}s") from e
        assert r.status in (400, 413, 431), f"{chunks[:80]!r}: {r.status} {r.body[:300]!r}"
        assert c.closed_within(TIMEOUT)
    wait_for_log_after(srv, mark, rf'" {r.status} ', timeout=TIMEOUT)
    assert smuggled not in srv.log


# --- bare CR/LF and NUL in the head -----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX:\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX\r: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GE\x00T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET \x00/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /?q=\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\x00\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo\x00st: a\r\n\r\n",
    ],
    ids=[
        "bare-lf-between-fields",
        "bare-lf-after-request-line",
        "bare-lf-before-end",
        "bare-lf-fold",
        "cr-cr-lf",
        "bare-cr-value-start",
        "bare-cr-in-name",
        "bare-cr-between-fields",
        "bare-cr-in-target",
        "nul-before-method",
        "nul-in-method",
        "nul-target-start",
        "nul-target-end",
        "nul-in-query",
        "nul-in-version",
        "nul-in-name",
    ],
)
def test_bare_cr_lf_and_nul_are_refused(srv, data):
    assert_refused(srv, data)


@pytest.mark.parametrize("target", [b"/caf\xc3\xa9?x=\xe2\x82\xac", b"//\xe2\x82\xac"])
def test_raw_uri_is_latin1_like_every_cgi_value(srv, target):
    """Bytes above 0x7f in the target reach REQUEST_URI/RAW_URI as latin-1, as in PATH_INFO
    (PEP 3333's native strings; found by fuzzing: they were decoded as UTF-8)."""
    with Client.to(srv, TIMEOUT) as c:
        c.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response(timeout=TIMEOUT)
    assert r.status == 200, r.body[:300]
    assert json.loads(r.body)["raw_uri"] == target.decode("latin-1")


def test_validators_found_nothing(srv):
    """No validator finding, panic or leaked traceback of the checks in the shared server's
    log (runs last in this module)."""
    assert_no_findings(srv)
