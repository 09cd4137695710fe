from .views import health

URL_CONF = {
    "/": health,
    "/health": health,
}
