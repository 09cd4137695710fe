"""An app whose import fails: it needs a module that does not exist."""

import ferrule_tests_no_such_dependency  # noqa: F401


def application(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
