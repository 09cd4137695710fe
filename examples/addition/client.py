"""Ask the addition service for a sum: a GET request carrying a JSON body, via ``http.client``.

Start the server first (see app.py), then::

    python examples/addition/client.py 2 3 [--url http://127.0.0.1:8000/]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from urllib.parse import urlsplit


def number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=number)
    parser.add_argument("b", type=number)
    parser.add_argument("--url", default="http://127.0.0.1:8000/")
    args = parser.parse_args(argv[1:])

    url = urlsplit(args.url)
    body = json.dumps({"val_a": args.a, "val_b": args.b}).encode("utf-8")
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
    try:
        # http.client sends whatever method and body it is given, so a GET can carry JSON.
        conn.request(
            "GET", url.path or "/", body=body, headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        payload = json.loads(response.read())
    finally:
        conn.close()

    if response.status != 200:
        print(f"{response.status} {response.reason}: {payload.get('error')}", file=sys.stderr)
        return 1
    print(f"{args.a} + {args.b} = {payload['sum']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
