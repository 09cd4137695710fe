"""An app that logs each request to the file named by $WORKER_LOG (a logging.FileHandler),
for the SIGUSR1 (reopen log files) test."""

import logging
import os

_handler = logging.FileHandler(os.environ["WORKER_LOG"])
_handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
_log = logging.getLogger("worker_filelog")
_log.addHandler(_handler)
_log.setLevel(logging.INFO)
_log.propagate = False


def app(environ, start_response):
    _log.info("request %s", environ.get("PATH_INFO"))
    body = f"pid={os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
