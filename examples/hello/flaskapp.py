"""Hello world in Flask.

Run from the repository root (needs ``pip install flask``)::

    ferrule --chdir examples/hello flaskapp:app
    curl http://127.0.0.1:8000/hello
"""

from flask import Flask, Response

app = Flask(__name__)


@app.route("/hello")
def hello():
    return Response("Hello, world! (Flask)\n", mimetype="text/plain")
