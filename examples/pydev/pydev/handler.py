"""PyDev's WSGI entry point: load the settings module, route each request to its view."""

from __future__ import annotations

import importlib
import os
import traceback

from .messages import Request, Response

ENVIRONMENT_VARIABLE = "PYDEV_SETTINGS_MODULE"


class ImproperlyConfigured(RuntimeError):
    """The settings module is missing or does not define URL_CONF."""


class WSGIHandler:
    """The WSGI application: ``handler(environ, start_response)``."""

    def __init__(self, settings_module: str | None = None):
        name = settings_module or os.environ.get(ENVIRONMENT_VARIABLE)
        if not name:
            raise ImproperlyConfigured(f"set {ENVIRONMENT_VARIABLE} to your settings module")
        self.settings = importlib.import_module(name)
        url_conf = getattr(self.settings, "URL_CONF", None)
        if not isinstance(url_conf, dict):
            raise ImproperlyConfigured(f"{name} must define URL_CONF, a dict of path -> view")
        self.url_conf = url_conf

    def __call__(self, environ, start_response):
        request = Request(environ, self.settings)
        view = self.url_conf.get(request.path)
        if view is None:
            response = Response(f"No view for {request.path}\n", status=404)
        else:
            try:
                response = view(request)
            except Exception:
                environ["wsgi.errors"].write(traceback.format_exc())
                response = Response("Internal server error\n", status=500)
        body = response.body.encode("utf-8")
        headers = [
            ("Content-Type", f"{response.content_type}; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *response.headers,
        ]
        start_response(response.status, headers)
        return [body]


def get_wsgi_application() -> WSGIHandler:
    """Build the app from the settings module named by PYDEV_SETTINGS_MODULE."""
    return WSGIHandler()
