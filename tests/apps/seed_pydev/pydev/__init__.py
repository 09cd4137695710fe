"""PyDev: the tiny settings-driven web framework from the seed article, rewritten for tests.

An app names its settings module in PYDEV_SETTINGS_MODULE; that module maps URL paths to view
functions in URL_CONF. Views take a Request and return a Response.
"""

import importlib
import os

SETTINGS_ENV = "PYDEV_SETTINGS_MODULE"


class Request:
    def __init__(self, environ):
        self.path = environ.get("PATH_INFO", "/")
        self.method = environ.get("REQUEST_METHOD", "GET")


class Response:
    def __init__(self, status="200 OK"):
        self.status = status
        self.headers = [("Content-Type", "text/plain; charset=utf-8")]
        self.body = ""

    def add_header(self, name, value):
        self.headers.append((name, value))

    def set_body(self, body):
        if body:
            self.body = body


class WSGIHandler:
    """The WSGI callable: routes each request to the view registered for its path."""

    def __init__(self):
        module_name = os.environ.get(SETTINGS_ENV)
        if not module_name:
            raise RuntimeError(f"set {SETTINGS_ENV} to the app's settings module")
        self.routes = importlib.import_module(module_name).URL_CONF

    def __call__(self, environ, start_response):
        request = Request(environ)
        view = self.routes.get(request.path)
        if view is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"no view for {request.path}".encode()]
        response = view(request)
        start_response(response.status, response.headers)
        return [response.body.encode("utf-8")]


def get_wsgi_application():
    return WSGIHandler()
