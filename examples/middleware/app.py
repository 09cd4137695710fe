"""simple_app wrapped in two middlewares: the body comes back upper-cased, with a
``Server-Timing`` header, and each request is logged to the server's error stream.

    ferrule --chdir examples/middleware app:app
    curl -i http://127.0.0.1:8000/hello
"""

from middleware import timing, uppercase
from simple_app import simple_app

app = timing(uppercase(simple_app))
