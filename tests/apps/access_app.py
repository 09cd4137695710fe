"""Access-log tests: echo a little, and count the calls that reach the access logger.

`ACCESS_APP_HANDLER=<file>` makes the import attach a FileHandler of its own to
`ferrule.access` (as an application's logging setup would).
"""

import logging
import os
from wsgiref.validate import validator

access = logging.getLogger("ferrule.access")
calls = 0
_info = access.info


def _counting_info(*args, **kwargs):
    global calls
    calls += 1
    _info(*args, **kwargs)


access.info = _counting_info  # every Python-side access-log call goes through here

if os.environ.get("ACCESS_APP_HANDLER"):
    handler = logging.FileHandler(os.environ["ACCESS_APP_HANDLER"])
    handler.setFormatter(logging.Formatter("py: %(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)


def _app(environ, start_response):
    if environ["PATH_INFO"] == "/calls":
        body = str(calls).encode()
    else:
        body = b"x" * int(environ.get("HTTP_X_SIZE", "5"))
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Resp", 'quoted "value"'),
        ],
    )
    return [body]


app = validator(_app)
