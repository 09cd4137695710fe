"""Falcon app for tests/test_frameworks.py (routes documented in fw_common)."""

from __future__ import annotations

from wsgiref.validate import validator

import falcon
import fw_common


class Query:
    def on_get(self, req, resp):
        resp.media = {"name": req.get_param("name"), "tags": req.get_param_as_list("tag") or []}


class Form:
    def on_post(self, req, resp):
        resp.media = {"fields": dict(req.get_media())}


class Json:
    def on_post(self, req, resp):
        resp.media = {"received": req.get_media(), "content_length": req.content_length}


class Stream:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = fw_common.stream_chunks(req.get_param_as_int("n"), req.get_param("gate"))


class Release:
    def on_get(self, req, resp):
        fw_common.release(req.get_param("gate", required=True))
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "released"


class Headers:
    def on_get(self, req, resp):
        token = req.get_header("X-Token")
        resp.set_header("X-Framework", "falcon")
        resp.set_header("X-Echo-Token", token or "")
        resp.media = {"token": token}


class Boom:
    def on_get(self, req, resp):
        fw_common.boom("falcon")


falcon_app = falcon.App()
for route, resource in [
    ("/query", Query()),
    ("/form", Form()),
    ("/json", Json()),
    ("/stream", Stream()),
    ("/release", Release()),
    ("/headers", Headers()),
    ("/boom", Boom()),
]:
    falcon_app.add_route(route, resource)

app = validator(falcon_app)
