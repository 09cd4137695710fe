"""Alternative settings, picked with ``PYDEV_SETTINGS_MODULE=pyapp.settings_fr``."""

from .settings import URL_CONF  # noqa: F401  (same routes, different greeting)

GREETING = "Bonjour"
