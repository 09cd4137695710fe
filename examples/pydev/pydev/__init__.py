"""PyDev: a tiny Django-flavoured web framework, to show what sits between server and app.

The app names a settings module in the ``PYDEV_SETTINGS_MODULE`` environment variable; that
module's ``URL_CONF`` maps request paths to view functions. A view takes a ``Request`` and
returns a ``Response``; ``get_wsgi_application()`` returns the WSGI callable a server runs.
"""

from .handler import ENVIRONMENT_VARIABLE, ImproperlyConfigured, WSGIHandler, get_wsgi_application
from .messages import Request, Response

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "ImproperlyConfigured",
    "Request",
    "Response",
    "WSGIHandler",
    "get_wsgi_application",
]
