"""Flask app for tests/test_frameworks.py (routes documented in fw_common)."""

from __future__ import annotations

from wsgiref.validate import validator

import fw_common
from flask import Flask, Response, jsonify, request, stream_with_context

flask_app = Flask(__name__)


@flask_app.get("/query")
def query():
    return jsonify(name=request.args.get("name"), tags=request.args.getlist("tag"))


@flask_app.post("/form")
def form():
    return jsonify(fields=request.form.to_dict())


@flask_app.post("/json")
def json_body():
    return jsonify(received=request.get_json(), content_length=request.content_length)


@flask_app.get("/stream")
def stream():
    chunks = fw_common.stream_chunks(int(request.args["n"]), request.args.get("gate"))
    return Response(stream_with_context(chunks), mimetype="text/plain")


@flask_app.get("/release")
def release():
    fw_common.release(request.args["gate"])
    return Response("released", mimetype="text/plain")


@flask_app.get("/headers")
def headers():
    token = request.headers.get("X-Token")
    response = jsonify(token=token)
    response.headers["X-Framework"] = "flask"
    response.headers["X-Echo-Token"] = token or ""
    return response


@flask_app.get("/boom")
def boom():
    fw_common.boom("flask")


app = validator(fw_common.sized_reads(flask_app))
