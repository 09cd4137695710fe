"""Settings for the hello-world Django project: no database, no apps, no middleware."""

# Demo only: a real deployment reads its secret from the environment.
SECRET_KEY = "ferrule-example-not-a-secret"
DEBUG = False
# DEBUG is off, so Django answers only for the hosts listed here (the port is not part of it).
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "djangoapp.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
