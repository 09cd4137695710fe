"""Default settings: which view answers which path."""

from .views import health, hello

GREETING = "Hello"

URL_CONF = {
    "/": health,
    "/health": health,
    "/hello": hello,
}
