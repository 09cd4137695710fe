"""A Pyramid application with a PasteDeploy factory, for tests/test_paste.py: served by
`pserve app.ini` with `[app:main] use = call:paste_pyramid_app:main`."""

import os

from pyramid.config import Configurator
from pyramid.response import Response


def hello(request):
    greeting = request.registry.settings.get("greeting", "hello")
    return Response(
        f"{greeting} from pyramid pid={os.getpid()} wsgi.multiprocess="
        f"{request.environ['wsgi.multiprocess']} server={request.environ.get('SERVER_SOFTWARE')}",
        content_type="text/plain",
    )


def main(global_config, **settings):
    """PasteDeploy app factory: settings come from the [app:main] section."""
    with Configurator(settings=settings) as config:
        config.add_route("hello", "/")
        config.add_view(hello, route_name="hello")
        return config.make_wsgi_app()
