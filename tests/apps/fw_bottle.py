"""Bottle app for tests/test_frameworks.py (routes documented in fw_common)."""

from __future__ import annotations

from wsgiref.validate import validator

import bottle
import fw_common

# Bottle refuses JSON bodies over 100 KiB by default; the tests post a little more.
bottle.BaseRequest.MEMFILE_MAX = 1024 * 1024
bottle_app = bottle.Bottle()


@bottle_app.get("/query")
def query():
    return {"name": bottle.request.query.getunicode("name"), "tags": _all(bottle.request.query)}


def _all(query) -> list[str]:
    # Bottle stores query values as latin-1 text; getunicode/decode give the UTF-8 reading.
    return list(query.decode().getall("tag"))


@bottle_app.post("/form")
def form():
    forms = bottle.request.forms.decode()
    return {"fields": {key: forms.get(key) for key in forms}}


@bottle_app.post("/json")
def json_body():
    return {"received": bottle.request.json, "content_length": bottle.request.content_length}


@bottle_app.get("/stream")
def stream():
    bottle.response.content_type = "text/plain"
    query = bottle.request.query
    return fw_common.stream_chunks(int(query["n"]), query.get("gate"))


@bottle_app.get("/release")
def release():
    fw_common.release(bottle.request.query["gate"])
    bottle.response.content_type = "text/plain"
    return "released"


@bottle_app.get("/headers")
def headers():
    token = bottle.request.get_header("X-Token")
    bottle.response.set_header("X-Framework", "bottle")
    bottle.response.set_header("X-Echo-Token", token or "")
    return {"token": token}


@bottle_app.get("/boom")
def boom():
    fw_common.boom("bottle")


app = validator(bottle_app)
