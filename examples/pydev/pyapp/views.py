"""The app's views: each takes a pydev.Request and returns a pydev.Response."""

import pydev


def health(request: pydev.Request) -> pydev.Response:
    return pydev.Response("Service is healthy\n")


def hello(request: pydev.Request) -> pydev.Response:
    greeting = getattr(request.settings, "GREETING", "Hello")
    name = request.param("name", "world")
    response = pydev.Response(f"{greeting}, {name}!\n")
    response.add_header("X-Settings-Module", request.settings.__name__)
    return response
