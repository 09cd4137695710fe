"""Django app for tests/test_frameworks.py (routes documented in fw_common).

Settings, views and URLs all live in this one module: ROOT_URLCONF points back at it.
"""

from __future__ import annotations

import json
from wsgiref.validate import validator

import django
import fw_common
from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="ferrule-tests-not-a-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    DATABASES={},
    USE_TZ=True,
)
django.setup()


def query(request):
    return JsonResponse({"name": request.GET.get("name"), "tags": request.GET.getlist("tag")})


def form(request):
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"}, content_type="text/plain")
    return JsonResponse({"fields": request.POST.dict()})


def json_body(request):
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"}, content_type="text/plain")
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    return JsonResponse({"received": json.loads(request.body), "content_length": length})


def stream(request):
    chunks = fw_common.stream_chunks(int(request.GET["n"]), request.GET.get("gate"))
    return StreamingHttpResponse(chunks, content_type="text/plain")


def release(request):
    fw_common.release(request.GET["gate"])
    return HttpResponse("released", content_type="text/plain")


def headers(request):
    token = request.headers.get("X-Token")
    response = JsonResponse({"token": token})
    response["X-Framework"] = "django"
    response["X-Echo-Token"] = token or ""
    return response


def boom(request):
    fw_common.boom("django")


urlpatterns = [
    path("query", query),
    path("form", form),
    path("json", json_body),
    path("stream", stream),
    path("release", release),
    path("headers", headers),
    path("boom", boom),
]

from django.core.wsgi import get_wsgi_application  # noqa: E402  (needs settings first)

app = validator(get_wsgi_application())
