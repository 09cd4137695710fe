"""WSGI apps for the PEP 3333 conformance tests (tests/test_pep3333.py).

`router` picks an app by the request header ``X-Pep-App`` (default: `environ_json`), so one
server can serve every app while PATH_INFO and QUERY_STRING stay free for the tests.
Parameters come from the query string; ``t`` is a per-test token the apps put in what they
log, so a test can find its own lines in a shared server's log.

Apps that follow the spec are wrapped in `wsgiref.validate.validator`. Apps that test the
read()/readline(limit) variants of ``wsgi.input`` or that misbehave on purpose are not (the
validator would reject them before the server sees them).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from urllib.parse import parse_qs
from wsgiref.validate import validator

from pep_input import digest, run_input_op, summarize

# Tag every record of the server's error logger with its logger name, so the tests can tell
# that a line went through `ferrule.error` (the default format does not show the name).
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("PEPLOG %(name)s %(levelname)s %(message)s"))
logging.getLogger("ferrule.error").addHandler(_handler)

TEXT = [("Content-Type", "text/plain")]


def _params(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, obj, status="200 OK"):
    data = json.dumps(obj).encode("utf-8")
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _note(environ, text):
    """Write one line to wsgi.errors (it reaches the log as a ferrule.error record)."""
    environ["wsgi.errors"].write(text + "\n")
    environ["wsgi.errors"].flush()


# --- environ -------------------------------------------------------------------------------


def _describe(v):
    d = {"type": type(v).__name__, "repr": repr(v)}
    if v is None or isinstance(v, (str, bool, int, float)):
        d["value"] = v
    return d


def environ_json(environ, start_response):
    """Dump every environ key as {"type", "repr", "value"}; validator-wrapped."""
    raw = dict(environ)  # before the validator wraps wsgi.input/wsgi.errors

    def inner(env, sr):
        inp = raw["wsgi.input"]
        err = raw["wsgi.errors"]
        out = {
            "env": {k: _describe(v) for k, v in raw.items()},
            "input_methods": {
                m: callable(getattr(inp, m, None))
                for m in ("read", "readline", "readlines", "__iter__")
            },
            "errors_methods": {
                m: callable(getattr(err, m, None)) for m in ("write", "writelines", "flush")
            },
            "file_wrapper_callable": callable(raw.get("wsgi.file_wrapper")),
            "empty_input_read": repr(env["wsgi.input"].read(10)),
        }
        return _json(sr, out)

    return validator(inner)(environ, start_response)


# --- wsgi.input ----------------------------------------------------------------------------


def input_ops(environ, start_response):
    """Read wsgi.input with ?op=...&n=... and report the pieces (not validator-wrapped:
    the validator only allows read(size))."""
    p = _params(environ)
    stream = environ["wsgi.input"]
    result = run_input_op(stream, p["op"], int(p.get("n", "0")))
    return _json(start_response, summarize(result, stream))


def upload_hash(environ, start_response):
    """Stream the body through sha256 in 64 KiB reads; validator-wrapped."""

    def inner(env, sr):
        total, sha256, biggest = digest(env["wsgi.input"])
        return _json(sr, {"bytes": total, "sha256": sha256, "biggest": biggest})

    return validator(inner)(environ, start_response)


def partial_read(environ, start_response):
    """Read only ?n= bytes of the body and answer."""
    n = int(_params(environ).get("n", "10"))
    got = environ["wsgi.input"].read(n)
    return _json(start_response, {"got": len(got)})


def no_read(environ, start_response):
    """Answer without touching the body."""
    start_response("200 OK", [*TEXT, ("Content-Length", "6")])
    return [b"unread"]


# --- wsgi.errors ---------------------------------------------------------------------------


def errors_app(environ, start_response):
    t = _params(environ)["t"]
    err = environ["wsgi.errors"]
    err.write(f"pep-errors {t} line-one\n")
    err.write(f"pep-errors {t} split ")
    err.write("line-two\n")
    err.writelines([f"pep-errors {t} wl-a\n", f"pep-errors {t} wl-b\n"])
    err.write(f"pep-errors {t} flushed-partial")
    err.flush()
    try:
        err.write(b"bytes are not text\n")
        bytes_rejected = False
    except TypeError:
        bytes_rejected = True
    start_response("200 OK", [*TEXT, ("Content-Length", "2")])
    return [b"ok" if bytes_rejected else b"no"]


# --- start_response / write() --------------------------------------------------------------


def write_app(environ, start_response):
    """A legacy app: body through write(), then an (optionally non-empty) iterable."""
    p = _params(environ)
    headers = list(TEXT)
    if p.get("cl"):
        headers.append(("Content-Length", p["cl"]))
    write = start_response("200 OK", headers)
    write(b"hello ")
    write(b"")
    write(b"world")
    if p.get("tail"):
        return [b" and the iterable"]
    return []


def write_non_bytes(environ, start_response):
    write = start_response("200 OK", TEXT)
    try:
        write("text, not bytes")
    except TypeError:
        return [b"write() refused str"]
    return [b"write() accepted str"]


_KEPT_WRITES = {}


def keep_write(environ, start_response):
    """?keep=T: keeps this request's write() under T. ?use=T: answers, then calls the
    write() kept under T (its request is over) and reports what that did."""
    params = _params(environ)
    write = start_response("200 OK", TEXT)
    if "keep" in params:
        _KEPT_WRITES[params["keep"]] = write
        return [b"kept"]
    try:
        _KEPT_WRITES.pop(params["use"])(b"stale bytes")
    except Exception as e:
        return [f"old write raised {type(e).__name__}".encode()]
    return [b"old write returned"]


def varied_response(environ, start_response):
    """Status and one header named by the query: each response must carry only its own."""
    params = _params(environ)
    start_response(params["status"], [*TEXT, (params["header"], "yes")])
    return [params["header"].encode()]


def start_response_misuse(environ, start_response):
    """Calls start_response with too few and too many arguments; reports both errors."""
    errors = []
    for args in (("200 OK",), ("200 OK", TEXT, None, "extra")):
        try:
            start_response(*args)
        except TypeError as e:
            errors.append(str(e))
        else:
            errors.append("accepted")
    start_response("200 OK", TEXT)
    return ["\n".join(errors).encode()]


def start_response_call_forms(environ, start_response):
    """Calls start_response in each form a Python caller can use: exc_info by keyword and by
    position, through functools.partial, through the type's __call__ (the tp_call slot, where
    a plain call takes the vectorcall one), and with arguments it must refuse. Reports what
    each form did; the status last declared is the one sent."""
    import functools

    seen = []

    def attempt(name, call):
        try:
            result = call()
        except (TypeError, RuntimeError) as e:
            seen.append(f"{name}: {type(e).__name__}: {e}")
        else:
            seen.append(f"{name}: {'self' if result is start_response else repr(result)}")

    attempt("callable", lambda: callable(start_response) or None)
    # Py_TPFLAGS_HAVE_VECTORCALL: plain calls skip tp_call.
    seen.append(f"vectorcall: {bool(type(start_response).__flags__ & (1 << 11))}")
    attempt("keyword", lambda: start_response("500 First", TEXT, exc_info=None))
    attempt("again", lambda: start_response("500 Again", TEXT))
    try:
        raise ValueError("replaced")
    except ValueError:
        info = sys.exc_info()
    attempt("positional", lambda: start_response("500 Second", TEXT, info))
    attempt("bogus", lambda: start_response("500 Bogus", TEXT, bogus=1))
    attempt("both", lambda: start_response("500 Both", TEXT, None, exc_info=None))
    attempt("partial", lambda: functools.partial(start_response, "500 Partial")(TEXT, info))
    slot = type(start_response).__call__
    attempt("slot", lambda: slot(start_response, "201 Slot", TEXT, exc_info=info))
    attempt("slot_bogus", lambda: slot(start_response, "500 Bogus", TEXT, bogus=1))
    return ["\n".join(seen).encode()]


def bad_status(environ, start_response):
    status = _params(environ)["status"]
    start_response(status.encode("latin-1") if status == "200 BYTES" else status, TEXT)
    return [b"should not be sent"]


def bad_header(environ, start_response):
    kind = _params(environ)["kind"]
    headers = {
        "crlf": [("X-Bad", "a\r\nX-Injected: yes")],
        "lf": [("X-Bad", "a\nX-Injected: yes")],
        "cr": [("X-Bad", "a\rX-Injected: yes")],
        "latin1": [("X-Bad", "snow \u2603 man")],
        "bytes_value": [("X-Bad", b"bytes")],
        "bytes_name": [(b"X-Bad", "value")],
        "bad_name": [("X Bad", "value")],
        "name_colon": [("X-Bad:", "value")],
        "not_pair": [("X-Bad", "value", "extra")],
        "tuple_headers": (("X-Bad", "value"),),
    }[kind]
    start_response("200 OK", headers)
    return [b"should not be sent"]


def latin1_header(environ, start_response):
    """A header value with non-ASCII latin-1 characters is sent as those bytes."""
    start_response("200 OK", [*TEXT, ("X-Latin", "caf\u00e9 \u00ff")])
    return [b"ok"]


class _Text(str):
    """A str subclass: CPython stores its characters apart from the object."""


def str_subclass_header(environ, start_response):
    """Status, header names and values given as str subclasses, ASCII and latin-1."""
    start_response(
        _Text("200 OK"),
        [*TEXT, (_Text("X-Sub"), _Text("caf\u00e9")), (_Text("X-Plain"), _Text("plain"))],
    )
    return [b"ok"]


def twice(environ, start_response):
    start_response("200 OK", TEXT)
    start_response("201 Created", TEXT)
    return [b"should not be sent"]


def twice_exc_none(environ, start_response):
    start_response("200 OK", TEXT)
    start_response("201 Created", TEXT, None)
    return [b"should not be sent"]


def exc_replace(environ, start_response):
    """start_response(200), then an error before any body: replace the response."""
    start_response("200 OK", [*TEXT, ("X-Original", "yes")])
    try:
        raise ValueError("replace me")
    except ValueError:
        start_response(
            "503 Replaced",
            [*TEXT, ("X-Replacement", "yes"), ("Content-Length", "8")],
            sys.exc_info(),
        )
    return [b"replaced"]


def exc_first_call(environ, start_response):
    """exc_info on the first start_response call is allowed (nothing was declared yet)."""
    try:
        raise ValueError("handled before any start_response")
    except ValueError:
        start_response("500 Handled", [*TEXT, ("Content-Length", "7")], sys.exc_info())
    return [b"handled"]


def exc_replace_after_empty(environ, start_response):
    """Yield b"" first: the head must still be held, so the replacement wins."""
    start_response("200 OK", [*TEXT, ("X-Original", "yes")])
    yield b""
    try:
        raise ValueError("replace me later")
    except ValueError:
        start_response("500 Replaced Late", [*TEXT, ("X-Replacement", "yes")], sys.exc_info())
    yield b"late replacement"


class _Marker(Exception):
    pass


def exc_after_write(environ, start_response):
    """Body sent through write(); then start_response(exc_info) must re-raise."""
    t = _params(environ)["t"]
    write = start_response("200 OK", TEXT)
    write(b"partial body ")
    try:
        raise _Marker(f"pep-exc-after-write {t}")
    except _Marker as exc:
        original = exc
        try:
            start_response("500 Too Late", TEXT, sys.exc_info())
        except BaseException as again:
            _note(environ, f"pep-reraised {t} same={again is original}")
            raise
        _note(environ, f"pep-not-reraised {t}")
    return [b"start_response(exc_info) returned after the body started"]


def exc_after_yield(environ, start_response):
    """A yielded chunk went out; then start_response(exc_info) must re-raise."""
    t = _params(environ)["t"]
    start_response("200 OK", TEXT)
    yield b"partial body "
    try:
        raise _Marker(f"pep-exc-after-yield {t}")
    except _Marker as exc:
        original = exc
        try:
            start_response("500 Too Late", TEXT, sys.exc_info())
        except BaseException as again:
            _note(environ, f"pep-reraised {t} same={again is original}")
            raise
        _note(environ, f"pep-not-reraised {t}")
    yield b"start_response(exc_info) returned after the body started"


def lazy_start(environ, start_response):
    """A generator that calls start_response only when first iterated (allowed by PEP 3333)."""
    start_response("200 OK", [*TEXT, ("X-Lazy", "yes")])
    yield b"lazy "
    yield b"body"


# --- close() -------------------------------------------------------------------------------


class Tracked:
    """An iterable whose close() logs ``pep-close <token> #<n>`` through wsgi.errors."""

    def __init__(self, environ, chunks, *, raise_at=None, forever=False, close_raises=False):
        self.environ = environ
        self.t = _params(environ)["t"]
        self.chunks = chunks
        self.raise_at = raise_at
        self.forever = forever
        self.close_raises = close_raises
        self.closes = 0

    def __iter__(self):
        i = 0
        while True:
            if self.raise_at is not None and i == self.raise_at:
                raise RuntimeError(f"pep-iter-boom {self.t}")
            if self.forever:
                yield b"x" * 65536
            elif i < len(self.chunks):
                yield self.chunks[i]
            else:
                return
            i += 1

    def close(self):
        self.closes += 1
        _note(self.environ, f"pep-close {self.t} #{self.closes}")
        if self.close_raises:
            raise RuntimeError(f"pep-close-boom {self.t}")


def close_ok(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "9")])
    return Tracked(environ, [b"one ", b"two ", b"3"])


def close_ok_validated(environ, start_response):
    def inner(env, sr):
        sr("200 OK", TEXT)
        return Tracked(env, [b"alpha ", b"beta"])

    return validator(inner)(environ, start_response)


def close_midway(environ, start_response):
    start_response("200 OK", TEXT)
    return Tracked(environ, [b"first chunk ", b"second chunk "], raise_at=2)


def close_forever(environ, start_response):
    start_response("200 OK", TEXT)
    return Tracked(environ, [], forever=True)


def close_raises(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "13")])
    return Tracked(environ, [b"complete ", b"body"], close_raises=True)


def close_generator(environ, start_response):
    """A generator: its close() runs the finally block."""
    t = _params(environ)["t"]
    start_response("200 OK", TEXT)
    try:
        yield b"gen "
        yield b"body"
    finally:
        _note(environ, f"pep-gen-finally {t}")


class ClosingList(list):
    """A list subclass with close(): PEP 3333 says close() must be called if present."""

    environ: dict

    def close(self):
        _note(self.environ, f"pep-close {_params(self.environ)['t']} #1")


def close_list_subclass(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "4")])
    body = ClosingList([b"list"])
    body.environ = environ
    return body


class ClosingTuple(tuple):
    environ: dict

    def close(self):
        _note(self.environ, f"pep-close {_params(self.environ)['t']} #1")


def close_tuple_subclass(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "5")])
    body = ClosingTuple((b"tup", b"le"))
    body.environ = environ
    return body


# --- Content-Length enforcement ------------------------------------------------------------


def cl_mismatch(environ, start_response):
    """Declare ?cl=, send ?send= bytes, via ?how=list|gen|write."""
    p = _params(environ)
    body = b"0123456789abcdefghij"[: int(p["send"])]
    write = start_response("200 OK", [*TEXT, ("Content-Length", p["cl"])])
    how = p.get("how", "list")
    if how == "write":
        write(body[:3])
        write(body[3:])
        return []
    if how == "gen":
        return iter([body[:3], body[3:]])
    return [body]


# --- wsgi.file_wrapper ---------------------------------------------------------------------

_last_file = {}
_last_file_lock = threading.Lock()


class ReadOnly:
    """A file-like with only read(): no fileno, no close."""

    def __init__(self, data):
        self._f = io.BytesIO(data)

    def read(self, size=-1):
        return self._f.read(size)


def file_wrapper_app(environ, start_response):
    p = _params(environ)
    kind = p["kind"]
    offset = int(p.get("offset", "0"))
    fw = environ["wsgi.file_wrapper"]
    if kind == "real":
        f = open(p["path"], "rb")  # noqa: SIM115 - closed by the server through the wrapper
        f.seek(offset)
        with _last_file_lock:
            _last_file[p["t"]] = f
    elif kind == "bytesio":
        with open(p["path"], "rb") as src:
            f = io.BytesIO(src.read())
        f.seek(offset)
        with _last_file_lock:
            _last_file[p["t"]] = f
    elif kind == "readonly":
        with open(p["path"], "rb") as src:
            f = ReadOnly(src.read())
    else:
        raise ValueError(kind)
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in p:
        headers.append(("Content-Length", p["cl"]))
    start_response("200 OK", headers)
    if "blksize" in p:
        return fw(f, int(p["blksize"]))
    return fw(f)


def file_closed(environ, start_response):
    """Whether the file served for token ?t= was closed by the server."""
    t = _params(environ)["t"]
    with _last_file_lock:
        f = _last_file.pop(t, None)
    return _json(start_response, {"known": f is not None, "closed": bool(f and f.closed)})


# --- app errors and misbehaving apps -------------------------------------------------------


def raise_before(environ, start_response):
    raise RuntimeError(f"pep-raise-before {_params(environ)['t']}")


def raise_after_start(environ, start_response):
    start_response("200 OK", [*TEXT, ("X-Original", "yes")])
    raise RuntimeError(f"pep-raise-after-start {_params(environ)['t']}")


def raise_after_body(environ, start_response):
    t = _params(environ)["t"]
    start_response("200 OK", TEXT)
    yield b"the start of the body "
    raise RuntimeError(f"pep-raise-after-body {t}")


def returns_str(environ, start_response):
    start_response("200 OK", TEXT)
    return "a str, not bytes"


def returns_list_of_str(environ, start_response):
    start_response("200 OK", TEXT)
    return ["a str in a list"]


def returns_int(environ, start_response):
    start_response("200 OK", TEXT)
    return 42


def returns_none(environ, start_response):
    start_response("200 OK", TEXT)
    return None


def no_start_response(environ, start_response):
    return []


def no_start_response_body(environ, start_response):
    return [b"body without start_response"]


def no_start_response_gen(environ, start_response):
    return
    yield b"never"


def ok(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "2")])
    return [b"ok"]


APPS = {
    name: obj
    for name, obj in dict(globals()).items()
    if callable(obj)
    and not name.startswith("_")
    and not isinstance(obj, type)
    and name not in ("router", "run_input_op", "summarize", "validator", "parse_qs")
}


def router(environ, start_response):
    """Dispatch on the X-Pep-App header; the chosen app's iterable is returned unchanged."""
    name = environ.get("HTTP_X_PEP_APP", "environ_json")
    return APPS[name](environ, start_response)
