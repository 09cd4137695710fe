"""A Flask app: GET /json answers a small JSON document, POST /echo the size of its body."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/json")
def json_route():
    return jsonify(message="Hello, World!")


@app.route("/echo", methods=["POST"])
def echo():
    return {"len": len(request.get_data())}
