"""A Django project with the admin, for the browser test (tests/test_browser.py).

`DJANGO_ADMIN_DIR` holds its SQLite database and `static/` (filled by `collectstatic`); the
static files are served by ferrule's `--static`, not by Django.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

BASE = Path(os.environ["DJANGO_ADMIN_DIR"])

settings.configure(
    DEBUG=False,
    SECRET_KEY="ferrule-tests-not-a-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
    ],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE / "db.sqlite3"}},
    STATIC_URL="/static/",
    STATIC_ROOT=BASE / "static",
    USE_TZ=True,
)
django.setup()

from django.contrib import admin  # noqa: E402  (needs the settings above)
from django.core.wsgi import get_wsgi_application  # noqa: E402


def favicon(request):
    return HttpResponse(status=204)


urlpatterns = [path("admin/", admin.site.urls), path("favicon.ico", favicon)]

application = get_wsgi_application()

if __name__ == "__main__":  # python django_admin_app.py collectstatic --noinput, migrate ...
    from django.core.management import execute_from_command_line

    execute_from_command_line([sys.argv[0], *sys.argv[1:]])
