"""Run an app with ferrule.serve() the way a library user would: python cli_serve_script.py."""

import sys

import ferrule


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served by ferrule.serve()"]


if __name__ == "__main__":
    ferrule.serve(application, host="127.0.0.1", port=0, threads=3)
    print("serve() returned", flush=True)
    sys.exit(0)
