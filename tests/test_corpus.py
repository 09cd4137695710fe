"""gunicorn's request corpus replayed against the real server (issue 6).

The corpus is `tests/requests/{valid,invalid}/*.http` of the gunicorn sdist, each with a
`.py` expectation; it is downloaded from PyPI at test time (see hostile_client.fetch_corpus)
and never committed. Every case is sent four ways over a real socket: whole, line by line,
byte by byte and in random pieces (fixed seed).

- A valid case must be answered with the environ its expectation implies (method, path,
  query, protocol, headers, body); pipelined requests get one answer each, in order, and the
  connection then behaves as the last request asked (a sentinel request is answered, or the
  server closes).
- An invalid case, sent and then half-closed, must get a 4xx/5xx (logged in the access log
  with its status) or a close without any response, within a timeout, and never a second
  response.

Where ferrule's policy differs from gunicorn's the case is listed in `POLICY` or `GATED`
with its reason; docs/conformance.md explains each difference.
"""

from __future__ import annotations

import json
import re
import traceback
from typing import Any
from urllib.parse import unquote

import pytest
from conftest import ServerProcess, ferrule_env
from hostile_client import (
    SPLITS,
    Case,
    Client,
    Closed,
    assert_no_findings,
    fetch_corpus,
    load_cases,
    request,
    wait_for_log_after,
)

CASE_TIMEOUT = 3.0  # seconds for one answer
SENTINEL = request("GET", "/__sentinel__", host="corpus.test")
INSERTED_HOST = "corpus.test"

# --- the corpus, loaded at collection (a failed download fails the tests, never skips) ----

try:
    CORPUS = fetch_corpus()
    VALID = load_cases(CORPUS, "valid")
    INVALID = load_cases(CORPUS, "invalid")
    LOAD_ERROR = ""
except Exception:  # noqa: BLE001 - reported by test_corpus_is_available
    VALID, INVALID = [], []
    LOAD_ERROR = traceback.format_exc()

# --- how ferrule's policy maps onto the corpus ----------------------------------------------

# Cases whose expectation depends on a gunicorn setting (`cfg.set(...)` in the .py file): the
# ferrule options that mean the same, or the reason the case is skipped. Every such case in
# the corpus must be listed (test_every_gated_case_is_mapped).
LIMIT_FLAGS = {
    "limit_request_line": "--limit-request-line",
    "limit_request_fields": "--limit-request-fields",
    "limit_request_field_size": "--limit-request-field-size",
}
NO_FOLDING = "ferrule has no permit_obsolete_folding: obs-fold is always refused (RFC 9112 §5.2)"
# gunicorn's boolean settings that ferrule has under the same meaning: the flag to pass.
BOOL_FLAGS = {"proxy_protocol": "--proxy-protocol"}
# gunicorn's settings that ferrule has under the same meaning and syntax: the option.
VALUE_FLAGS = {"forwarded_allow_ips": "--forwarded-allow-ips"}
NO_HEADER_MAP = (
    "ferrule has no header_map setting: names with '_' are always dropped (gunicorn's "
    "default, 'drop'); valid/040 checks that"
)
GATED: dict[str, str | None] = {
    # None: run with the ferrule options mapped from the case's cfg (LIMIT_FLAGS).
    "valid/024": None,
    "valid/026": None,
    "valid/028": "ferrule has no strip_header_spaces: 'Name :' is always refused (RFC 9112 §5.1)",
    "valid/031compat": "ferrule has no casefold_http_method: the method reaches the app as sent",
    # permit_unconventional_http_method: ferrule accepts any token as a method by default.
    "valid/031compat2": None,
    "valid/040_compat": NO_HEADER_MAP,
    "valid/compat_obs_fold": NO_FOLDING,
    "valid/compat_obs_fold_huge": NO_FOLDING,
    # proxy_protocol: --proxy-protocol (the test client, 127.0.0.1, is a trusted proxy by
    # default, as in gunicorn).
    "valid/pp_01": None,
    "valid/pp_02": None,
    "valid/pp_03": None,
    "valid/pp_04": None,
    "valid/pp_05": None,
    "invalid/010": None,
    "invalid/011": None,
    "invalid/012": None,
    # permit_obsolete_folding + a field limit: refused either way (ferrule never unfolds).
    "invalid/013": None,
    "invalid/019": None,
    "invalid/040": NO_HEADER_MAP,
    "invalid/chunked_07": NO_HEADER_MAP,
    # gunicorn's 0 means its default (8190) here; ferrule's 0 means the ceiling (65536).
    "invalid/limit_header_default_01": None,
    "invalid/pp_01": None,
    "invalid/pp_02": None,
    "invalid/pp_03": None,
}

# Cases (in gunicorn's default configuration) that ferrule answers differently on purpose:
# the status it answers instead, and why (docs/conformance.md).
NOT_IMPLEMENTED_CODING = "a transfer coding other than chunked is refused with 501 (RFC 9112 §6.1)"
TRAILERS_DISCARDED = (
    "trailer fields are read and discarded, never merged into the environ, so a framing or "
    "Host field in the trailers cannot change anything (RFC 9110 §6.5.1)"
)
POLICY: dict[str, tuple[int, str]] = {
    "valid/025": (501, NOT_IMPLEMENTED_CODING),
    "valid/025_line": (501, NOT_IMPLEMENTED_CODING),
    "valid/029": (501, NOT_IMPLEMENTED_CODING),
    "valid/030": (501, NOT_IMPLEMENTED_CODING),
    "valid/rfc9112_smuggle_gzip_chunked_01": (501, NOT_IMPLEMENTED_CODING),
    "valid/rfc9112_smuggle_te_identity_chunked_01": (501, NOT_IMPLEMENTED_CODING),
    "invalid/rfc9110_trailer_forbidden_cl_01": (200, TRAILERS_DISCARDED),
    "invalid/rfc9110_trailer_forbidden_host_01": (200, TRAILERS_DISCARDED),
    "invalid/rfc9110_trailer_forbidden_te_01": (200, TRAILERS_DISCARDED),
    "invalid/rfc9112_leading_crlf_02": (
        200,
        "every empty line before the request line is ignored; RFC 9112 §2.2 asks for at least one",
    ),
    "invalid/rfc9112_target_non_ascii_02": (
        200,
        "bytes above 0x7F in the target are passed to the app as latin-1 (PEP 3333), like "
        "test_pep3333.py::test_raw_non_ascii_path_bytes_become_latin1",
    ),
}

# Valid cases (in their gunicorn configuration) that ferrule closes without an answer on
# purpose, and why.
CLOSED: dict[str, str] = {
    "valid/pp_03": "with --proxy-protocol a connection must start with a PROXY header: the "
    "receiver must not guess whether one is there (PROXY protocol spec §2); gunicorn serves a "
    "request without one",
}

# gunicorn's default limits in ferrule's terms: the corpus expects them. gunicorn counts a
# header field with its CRLF, ferrule without (so ferrule's 8188 is gunicorn's 8190), and
# gunicorn's limit_request_line default is 4094 where ferrule's is 8190.
GUNICORN_DEFAULTS = {
    "limit_request_line": 4094,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
}


def ferrule_options(cfg: dict[str, Any]) -> tuple[str, ...]:
    """The ferrule options meaning gunicorn's defaults overridden by the case's `cfg`."""
    limits = {**GUNICORN_DEFAULTS, **{k: v for k, v in cfg.items() if k in LIMIT_FLAGS}}
    if limits["limit_request_field_size"] == 0:  # gunicorn: 0 means its default
        limits["limit_request_field_size"] = GUNICORN_DEFAULTS["limit_request_field_size"]
    limits["limit_request_field_size"] -= 2
    options: list[str] = []
    for key, value in sorted(limits.items()):
        options += [LIMIT_FLAGS[key], str(value)]
    options += [flag for key, flag in sorted(BOOL_FLAGS.items()) if cfg.get(key)]
    for key, flag in sorted(VALUE_FLAGS.items()):
        if key in cfg:
            options += [flag, str(cfg[key])]
    return tuple(options)


def _content_length_fixed(data: bytes) -> bytes:
    """valid/099 declares Content-Length 17914 but carries 8599 body bytes (gunicorn's test
    only compares what it reads); send it with the length of the body it has."""
    head, sep, body = data.partition(b"\r\n\r\n")
    head = re.sub(rb"(?im)^(content-length:)[ \t]*\d+", rb"\g<1> %d" % len(body), head)
    return head + sep + body


# Corpus defects corrected before sending, and why.
FIXUPS = {"valid/099": _content_length_fixed}


# --- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Servers running `hostile_echo:app` with the access log on, one per option set."""
    started: dict[tuple[str, ...], ServerProcess] = {}

    def get(options: tuple[str, ...] = ()) -> ServerProcess:
        if options not in started:
            s = ServerProcess(
                ["--bind", "127.0.0.1:0", "--access-log", *options, "hostile_echo:app"],
                tmp_path_factory.mktemp("corpus"),
                ferrule_env(),
            )
            started[options] = s
            s.wait_ready()
        return started[options]

    get.started = started  # type: ignore[attr-defined]
    yield get
    for s in started.values():
        s.stop()


def server_for(case: Case, servers) -> ServerProcess:
    if case.name in GATED and GATED[case.name] is not None:
        pytest.skip(f"{case.name}: {GATED[case.name]}")
    return servers(ferrule_options(case.cfg))


# --- expectations ---------------------------------------------------------------------------


def expected_path_query(raw: str) -> tuple[str, str]:
    """PATH_INFO and QUERY_STRING for a request target: the fragment dropped, the
    absolute-form's scheme and authority dropped, the path percent-decoded as latin-1.

    The asterisk-form (`OPTIONS *`) and the authority-form (`CONNECT host:port`) have no
    path: PATH_INFO is empty (PEP 3333 validators require it to be empty or to start with
    '/'); the app finds the target in RAW_URI/REQUEST_URI."""
    if raw == "*" or not (raw.startswith("/") or re.match(r"(?i)https?://", raw)):
        return "", ""
    target = raw.split("#", 1)[0]
    path, _, query = target.partition("?")
    m = re.match(r"(?i)https?://[^/]*", path)
    if m:
        path = path[m.end() :] or "/"
    return unquote(path, encoding="latin-1"), query


def expected_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The environ keys a list of request headers becomes (PEP 3333, ferrule's policy):
    names with '_' are dropped, repeated fields are joined with ', '."""
    out: dict[str, str] = {}
    for name, value in headers:
        if "_" in name:
            continue
        upper = name.upper().replace("-", "_")
        key = upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
        if key == "CONTENT_LENGTH":
            out[key] = str(int(value.strip()))
        elif key in out:
            out[key] = f"{out[key]}, {value}"
        else:
            out[key] = value
    return out


def needs_host(exp: dict[str, Any]) -> bool:
    return tuple(exp["version"]) == (1, 1) and not any(
        name.upper() == "HOST" for name, _ in exp["headers"]
    )


def with_host(case: Case) -> bytes:
    """The case's bytes with `Host: corpus.test` after each HTTP/1.1 request line that has
    no Host field: ferrule refuses such requests with 400 (RFC 9112 §3.2 MUST)."""
    data, out, pos = case.data, b"", 0
    for exp in case.expect:
        version = "HTTP/{}.{}".format(*exp["version"])
        line = f"{exp['method']} {exp['uri']['raw']} {version}".encode("latin-1")
        at = data.find(line, pos)
        assert at >= 0, f"request line {line!r} not found in {case.name}"
        end = data.index(b"\n", at) + 1
        out += data[pos:end]
        if needs_host(exp):
            out += f"Host: {INSERTED_HOST}\r\n".encode()
        pos = end
    return out + data[pos:]


def check_echo(case: Case, exp: dict[str, Any], got: dict[str, Any]) -> None:
    path, query = expected_path_query(exp["uri"]["raw"])
    headers = expected_headers(exp["headers"])
    if needs_host(exp):
        headers["HTTP_HOST"] = INSERTED_HOST
    want = {
        "method": exp["method"],
        "path": path,
        "query": query,
        "protocol": "HTTP/{}.{}".format(*exp["version"]),
        "raw_uri": exp["uri"]["raw"],
        "headers": headers,
        "body": body.decode("latin-1") if isinstance(body := exp["body"], bytes) else body,
    }
    if case.name == "valid/099":
        want["headers"]["CONTENT_LENGTH"] = str(len(exp["body"]))
    assert got == want, f"{case.name}: environ differs"


def keeps_alive(exp: dict[str, Any]) -> bool:
    connection = ",".join(v for k, v in exp["headers"] if k.upper() == "CONNECTION").lower()
    tokens = [t.strip() for t in connection.split(",")]
    if tuple(exp["version"]) == (1, 1):
        return "close" not in tokens
    return "keep-alive" in tokens and "close" not in tokens


# --- the tests ------------------------------------------------------------------------------


def test_corpus_is_available():
    assert not LOAD_ERROR, f"the gunicorn request corpus could not be loaded:\n{LOAD_ERROR}"
    assert len(VALID) >= 50 and len(INVALID) >= 50, (len(VALID), len(INVALID))


def test_every_gated_case_is_mapped():
    """A case that needs a gunicorn setting is either mapped to ferrule options or skipped
    with a reason; a new one in a newer corpus must be looked at."""
    gated = {c.name for c in VALID + INVALID if c.cfg}
    assert gated == set(GATED), (gated - set(GATED), set(GATED) - gated)
    for name, reason in GATED.items():
        case = next(c for c in VALID + INVALID if c.name == name)
        if reason is None:
            unmapped = set(case.cfg) - set(LIMIT_FLAGS) - set(BOOL_FLAGS) - set(VALUE_FLAGS)
            unmapped -= {"permit_obsolete_folding"}
            unmapped -= {"permit_unconventional_http_method"}
            assert not unmapped, f"{name}: no ferrule option for {unmapped}"


@pytest.mark.parametrize("way", list(SPLITS))
@pytest.mark.parametrize("case", VALID, ids=[c.name for c in VALID])
def test_valid(case: Case, way: str, servers):
    srv = server_for(case, servers)
    data = FIXUPS[case.name](case.data) if case.name in FIXUPS else case.data
    if any(needs_host(e) for e in case.expect):
        case = Case(case.name, data, case.expect, case.error, case.cfg)
        data = with_host(case)
    with Client.to(srv, CASE_TIMEOUT) as c:
        c.send_pieces(SPLITS[way](data))
        if case.name in CLOSED:
            with pytest.raises(Closed) as closed:
                c.response(timeout=CASE_TIMEOUT)
            assert closed.value.partial == b"", f"{case.name} ({CLOSED[case.name]})"
            return
        if case.name in POLICY:
            status, reason = POLICY[case.name]
            r = c.response(timeout=CASE_TIMEOUT)
            assert r.status == status, f"{case.name} ({reason}): got {r.status}"
            assert c.closed_within(CASE_TIMEOUT)
            return
        for i, exp in enumerate(case.expect):
            try:
                r = c.response(timeout=CASE_TIMEOUT)
            except Closed as e:
                raise AssertionError(f"{case.name}: closed before answer {i + 1}") from e
            except TimeoutError as e:
                raise AssertionError(f"{case.name}: no answer {i + 1} in time") from e
            assert r.status == 200, f"{case.name} #{i + 1}: {r.status} {r.body[:300]!r}"
            check_echo(case, exp, json.loads(r.body))
        if keeps_alive(case.expect[-1]):
            c.send(SENTINEL)
            r = c.response(timeout=CASE_TIMEOUT)
            assert r.status == 200, "the connection was not usable after the case"
            assert json.loads(r.body)["path"] == "/__sentinel__", "an extra response came"
        else:
            assert c.closed_within(CASE_TIMEOUT), "the connection was kept open"


@pytest.mark.parametrize("way", list(SPLITS))
@pytest.mark.parametrize("case", INVALID, ids=[c.name for c in INVALID])
def test_invalid(case: Case, way: str, servers):
    srv = server_for(case, servers)
    mark = len(srv.log)
    if case.name in POLICY:
        accepted_on_purpose(srv, case, way)
        return
    with Client.to(srv, CASE_TIMEOUT) as c:
        c.send_pieces(SPLITS[way](case.data))
        c.shutdown_write()
        try:
            r = c.response(timeout=CASE_TIMEOUT)
        except Closed as e:
            assert e.partial == b"", f"{case.name}: a cut-off response {e.partial[:200]!r}"
            return  # closed without answering: allowed
        except TimeoutError as e:
            raise AssertionError(f"{case.name}: no answer and no close in time") from e
        assert r.status >= 400, (
            f"{case.name} (gunicorn: {case.error}) was answered {r.status}: {r.body[:300]!r}"
        )
        assert c.closed_within(CASE_TIMEOUT), f"{case.name}: open after {r.status}"
    # the refusal is in the access log with its status
    wait_for_log_after(srv, mark, rf'" {r.status} ', timeout=CASE_TIMEOUT)


def accepted_on_purpose(srv: ServerProcess, case: Case, way: str) -> None:
    """An invalid case ferrule accepts by policy: one 200 answer, then the connection stays
    usable (a sentinel request is answered next, not a smuggled one) or, for HTTP/1.0,
    closes."""
    status, reason = POLICY[case.name]
    with Client.to(srv, CASE_TIMEOUT) as c:
        c.send_pieces(SPLITS[way](case.data))
        r = c.response(timeout=CASE_TIMEOUT)
        assert r.status == status, f"{case.name} ({reason}): got {r.status} {r.body[:300]!r}"
        echoed = json.loads(r.body)
        if "trailer" in case.name:
            assert echoed["body"] == "hello"
            assert "CONTENT_LENGTH" not in echoed["headers"]
            assert echoed["headers"]["HTTP_HOST"] == "example.com"
        if echoed["protocol"] == "HTTP/1.0":
            assert c.closed_within(CASE_TIMEOUT), "an HTTP/1.0 connection was kept open"
            return
        c.send(SENTINEL)
        r = c.response(timeout=CASE_TIMEOUT)
        assert json.loads(r.body)["path"] == "/__sentinel__", "an extra response came"


def test_validators_found_nothing(servers):
    """wsgiref's validator and werkzeug's lint around the echo app found nothing in any
    request above (runs last in this module)."""
    assert servers.started, "no corpus server ran"
    for s in servers.started.values():
        assert_no_findings(s)
