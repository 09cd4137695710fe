"""Apps for the CLI/loader tests: several callables reachable by different TARGET forms."""

import json


def _text(body):
    def app(environ, start_response):
        data = body.encode("utf-8")
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))]
        )
        return [data]

    return app


application = _text("hello from application")
app = _text("hello from app")


class Holder:
    wsgi = staticmethod(_text("hello from Holder.wsgi"))


holder = Holder()
not_callable = 42


def create_app(greeting="hi", *, times=1, extra=None):
    """A factory; the response shows the arguments it was called with."""
    return _text(json.dumps({"greeting": greeting, "times": times, "extra": extra}))


def broken_factory():
    raise RuntimeError("the factory exploded")


def make_nothing():
    return None


def echo_environ(environ, start_response):
    """Reply with a few environ keys as JSON; write one line to wsgi.errors if asked."""
    if environ.get("QUERY_STRING") == "complain":
        environ["wsgi.errors"].write("cli_hello complaint: something looks wrong\n")
    keys = ("SCRIPT_NAME", "PATH_INFO", "wsgi.multithread", "wsgi.multiprocess")
    data = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]
