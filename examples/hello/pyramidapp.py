"""Hello world in Pyramid.

Run from the repository root (needs ``pip install pyramid``)::

    ferrule --chdir examples/hello pyramidapp:app
    curl http://127.0.0.1:8000/hello
"""

from pyramid.config import Configurator
from pyramid.response import Response


def hello(request):
    return Response("Hello, world! (Pyramid)\n", content_type="text/plain", charset="utf-8")


with Configurator() as config:
    config.add_route("hello", "/hello")
    config.add_view(hello, route_name="hello")
    app = config.make_wsgi_app()
