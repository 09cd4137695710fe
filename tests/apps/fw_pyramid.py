"""Pyramid app for tests/test_frameworks.py (routes documented in fw_common).

Pyramid has no catch-all error view unless one is added, so /boom's exception propagates out
of the WSGI app and the server itself must turn it into a 500.
"""

from __future__ import annotations

from wsgiref.validate import validator

import fw_common
from pyramid.config import Configurator
from pyramid.response import Response


def query(request):
    return {"name": request.GET.get("name"), "tags": request.GET.getall("tag")}


def form(request):
    return {"fields": dict(request.POST.items())}


def json_body(request):
    return {"received": request.json_body, "content_length": request.content_length}


def stream(request):
    chunks = fw_common.stream_chunks(int(request.GET["n"]), request.GET.get("gate"))
    return Response(app_iter=chunks, content_type="text/plain")


def release(request):
    fw_common.release(request.GET["gate"])
    return Response("released", content_type="text/plain")


def headers(request):
    token = request.headers.get("X-Token")
    request.response.headers["X-Framework"] = "pyramid"
    request.response.headers["X-Echo-Token"] = token or ""
    return {"token": token}


def boom(request):
    fw_common.boom("pyramid")


with Configurator() as config:
    for name, view, method, renderer in [
        ("query", query, "GET", "json"),
        ("form", form, "POST", "json"),
        ("json", json_body, "POST", "json"),
        ("stream", stream, "GET", None),
        ("release", release, "GET", None),
        ("headers", headers, "GET", "json"),
        ("boom", boom, "GET", None),
    ]:
        config.add_route(name, f"/{name}", request_method=method)
        config.add_view(view, route_name=name, renderer=renderer)
    pyramid_app = config.make_wsgi_app()

app = validator(pyramid_app)
