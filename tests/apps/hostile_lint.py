"""wsgiref's validator and werkzeug's LintMiddleware around the hostile-test apps, with every
warning they raise turned into an error.

A finding raised while the app runs becomes a 500 and a traceback in the error log; one
raised later (werkzeug warns from ``__del__`` when an iterable is never closed) goes through
``sys.unraisablehook``, which prints a ``LINT-FINDING`` line. The tests assert that the log
holds none of these (`FINDING_PATTERNS`).

One warning is not a finding about the server: wsgiref's "Unknown REQUEST_METHOD" is about
the method the client chose (the corpus uses methods like ``-BLARGH``), so it is ignored.
"""

from __future__ import annotations

import sys
import warnings
from wsgiref.validate import WSGIWarning as WsgirefWarning
from wsgiref.validate import validator

from werkzeug.middleware.lint import HTTPWarning, LintMiddleware
from werkzeug.middleware.lint import WSGIWarning as WerkzeugWarning

warnings.filterwarnings("error", category=WerkzeugWarning)
warnings.filterwarnings("error", category=HTTPWarning)
warnings.filterwarnings("error", category=WsgirefWarning)
warnings.filterwarnings("ignore", message="Unknown REQUEST_METHOD", category=WsgirefWarning)

FINDING_PATTERNS = ("LINT-FINDING", "WSGIWarning", "HTTPWarning", "AssertionError")


def _unraisable(args) -> None:  # type: ignore[no-untyped-def]
    print(f"LINT-FINDING {args.exc_type.__name__}: {args.exc_value}", file=sys.stderr, flush=True)


sys.unraisablehook = _unraisable


def linted(app):  # type: ignore[no-untyped-def]
    """`app` checked by wsgiref's validator (outside) and werkzeug's LintMiddleware."""
    return validator(LintMiddleware(app))
