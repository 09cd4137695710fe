"""An app for tests/test_logging.py. At import time it logs "imported" through the logger
`logcfg_app` (so a test can tell whether --log-config was applied before the import); each
request writes a line with its path to wsgi.errors; /raise raises."""

import logging
import os

logging.getLogger("logcfg_app").warning("logcfg_app imported in pid %d", os.getpid())


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/raise":
        raise RuntimeError("logcfg_app: boom")
    environ["wsgi.errors"].write(f"logcfg_app request {path}\n")
    body = f"pid={os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
