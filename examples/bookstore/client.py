"""Walk through every bookstore endpoint with ``requests`` and check each status code.

Start the server first (see app.py), then::

    python examples/bookstore/client.py [BASE_URL]    # defaults to http://127.0.0.1:8000

Exits with status 1 if any response has an unexpected status code.
"""

from __future__ import annotations

import sys
from urllib.parse import urljoin

import requests

TIMEOUT = 10


def main(argv: list[str]) -> int:
    base = (argv[1] if len(argv) > 1 else "http://127.0.0.1:8000").rstrip("/")
    failures = 0

    with requests.Session() as session:

        def call(method: str, target: str, expected: int, **kwargs) -> requests.Response:
            """Send a request to `target` (a path under BASE_URL, or a full URL)."""
            nonlocal failures
            url = target if "://" in target else base + target
            response = session.request(method, url, timeout=TIMEOUT, **kwargs)
            mark = "ok " if response.status_code == expected else "BAD"
            failures += response.status_code != expected
            path = response.request.path_url
            print(f"{mark} {method:6} {path:28} -> {response.status_code} {response.text.strip()}")
            return response

        call("GET", "/books", 200)
        call("GET", "/books?author=Octavia E. Butler", 200)
        call("GET", "/books/1", 200)
        call("GET", "/books/999", 404)
        new_book = {"title": "Parable of the Sower", "author": "Octavia E. Butler", "year": 1993}
        created = call("POST", "/books", 201, json=new_book)
        location = created.headers.get("Location", "")
        print(f"    Location: {location}")
        if location:
            call("GET", urljoin(base, location), 200)
        call("POST", "/books", 400, data="{not json", headers={"Content-Type": "application/json"})
        call("POST", "/books", 400, json={"title": "No author"})
        replacement = {"title": "Kindred (25th anniversary)", "author": "Octavia E. Butler"}
        call("PUT", "/books/3", 200, json=replacement)
        call("PUT", "/books/999", 404, json=replacement)
        call("DELETE", "/books/2", 204)
        call("DELETE", "/books/2", 404)
        call("GET", "/books", 200)

    print("all responses as expected" if not failures else f"{failures} unexpected responses")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
