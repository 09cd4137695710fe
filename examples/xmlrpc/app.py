"""XML-RPC as a plain WSGI application: ``add``, ``multiply`` and ``greeting``.

The standard library's ``SimpleXMLRPCDispatcher`` does the XML (un)marshalling; this module only
adapts it to WSGI, so any WSGI server can host the service. Run from the repository root::

    ferrule --chdir examples/xmlrpc app:app

and call it with ``python examples/xmlrpc/client.py``.
"""

from __future__ import annotations

from xmlrpc.server import SimpleXMLRPCDispatcher

#: Paths the service answers on; ``ServerProxy("http://host:port")`` posts to ``/RPC2``.
RPC_PATHS = ("/", "/RPC2")
#: Largest request body accepted, in bytes.
MAX_BODY = 1024 * 1024


def _check_numbers(*values: object) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {type(value).__name__}")


def add(x, y):
    """Return x + y."""
    _check_numbers(x, y)
    return x + y


def multiply(x, y):
    """Return x * y."""
    _check_numbers(x, y)
    return x * y


def greeting(name):
    """Return a friendly greeting for `name`."""
    if not isinstance(name, str):
        raise TypeError("name must be a string")
    return f"Hello, {name}! This greeting came over XML-RPC from a WSGI app."


dispatcher = SimpleXMLRPCDispatcher(allow_none=False, encoding="utf-8")
dispatcher.register_function(add)
dispatcher.register_function(multiply)
dispatcher.register_function(greeting)
dispatcher.register_introspection_functions()  # system.listMethods, system.methodHelp, ...


def _read_body(environ: dict) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY."""
    stream = environ["wsgi.input"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    if length > 0:
        return stream.read(length)
    if not environ.get("wsgi.input_terminated"):
        return b""
    # A chunked body: the server marks the stream as ending with the body, so read to EOF.
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(65536, MAX_BODY + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_BODY:
            return None


def _plain(start_response, status: str, text: str, extra: tuple = ()) -> list[bytes]:
    body = text.encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra,
    ]
    start_response(status, headers)
    return [body]


def app(environ, start_response):
    """WSGI entry point: POST an XML-RPC call, get the XML-RPC response back."""
    if environ.get("PATH_INFO", "/") not in RPC_PATHS:
        return _plain(start_response, "404 Not Found", "XML-RPC lives at / and /RPC2\n")
    if environ["REQUEST_METHOD"] != "POST":
        return _plain(
            start_response,
            "405 Method Not Allowed",
            "XML-RPC calls are made with POST\n",
            (("Allow", "POST"),),
        )
    body = _read_body(environ)
    if body is None:
        return _plain(start_response, "413 Content Too Large", "request body too large\n")
    # Errors inside a procedure (and unparsable XML) come back as an XML-RPC Fault, not a 500.
    response = dispatcher._marshaled_dispatch(body)
    start_response(
        "200 OK",
        [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(response)))],
    )
    return [response]


application = app
