"""A bookstore REST API in Flask: every HTTP verb with the status code it should return.

    GET    /books            200  the collection (``?author=`` filters it)
    POST   /books            201  create; ``Location`` names the new book; 400 on bad JSON
    GET    /books/<id>       200  one book; 404 if there is no such book
    PUT    /books/<id>       200  replace; 400 on bad JSON, 404 if missing
    DELETE /books/<id>       204  delete; 404 if missing

Run from the repository root (needs ``pip install flask``)::

    ferrule --chdir examples/bookstore app:app

``app:create_app()`` gives a fresh store, and ``python examples/bookstore/client.py`` walks
through every endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from flask import Flask, jsonify, request, url_for

STARTER_BOOKS = (
    {"title": "The Left Hand of Darkness", "author": "Ursula K. Le Guin", "year": 1969},
    {"title": "The Dispossessed", "author": "Ursula K. Le Guin", "year": 1974},
    {"title": "Kindred", "author": "Octavia E. Butler", "year": 1979},
)


class BookStore:
    """Books kept in memory. ferrule runs the app on several threads, so every access locks."""

    def __init__(self, books: Iterable[dict] = ()):
        self._lock = threading.Lock()
        self._books: dict[int, dict] = {}
        self._next_id = 1
        for book in books:
            self.add(book)

    def list(self, author: str | None = None) -> list[dict]:
        with self._lock:
            return [dict(b) for b in self._books.values() if author in (None, b["author"])]

    def get(self, book_id: int) -> dict | None:
        with self._lock:
            book = self._books.get(book_id)
            return dict(book) if book else None

    def add(self, fields: dict) -> dict:
        with self._lock:
            book = {"id": self._next_id, **fields}
            self._books[book["id"]] = book
            self._next_id += 1
            return dict(book)

    def replace(self, book_id: int, fields: dict) -> dict | None:
        with self._lock:
            if book_id not in self._books:
                return None
            book = {"id": book_id, **fields}
            self._books[book_id] = book
            return dict(book)

    def delete(self, book_id: int) -> bool:
        with self._lock:
            return self._books.pop(book_id, None) is not None


def parse_book(payload: object) -> tuple[dict | None, str | None]:
    """Validate a request body; return (fields, None) or (None, error message)."""
    if not isinstance(payload, dict):
        return None, "send a JSON object with Content-Type: application/json"
    missing = [
        key
        for key in ("title", "author")
        if not isinstance(payload.get(key), str) or not payload[key].strip()
    ]
    if missing:
        return None, f"missing or empty: {', '.join(missing)}"
    year = payload.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
        return None, "year must be an integer"
    return {"title": payload["title"], "author": payload["author"], "year": year}, None


def create_app(books: Iterable[dict] = STARTER_BOOKS) -> Flask:
    """Build the Flask app around a new store holding `books`."""
    app = Flask(__name__)
    store = BookStore(books)

    def error(status: int, message: str):
        return jsonify(error=message), status

    @app.errorhandler(404)
    def not_found(_exc):
        return error(404, "not found")

    @app.errorhandler(405)
    def method_not_allowed(exc):
        response = exc.get_response()
        response.set_data(jsonify(error="method not allowed").get_data())
        response.mimetype = "application/json"
        return response

    @app.get("/")
    def index():
        return jsonify(books=url_for("list_books"))

    @app.get("/books")
    def list_books():
        return jsonify(store.list(author=request.args.get("author")))

    @app.post("/books")
    def create_book():
        fields, problem = parse_book(request.get_json(silent=True))
        if problem:
            return error(400, problem)
        book = store.add(fields)
        return jsonify(book), 201, {"Location": url_for("get_book", book_id=book["id"])}

    @app.get("/books/<int:book_id>")
    def get_book(book_id: int):
        book = store.get(book_id)
        return jsonify(book) if book else error(404, f"no book with id {book_id}")

    @app.put("/books/<int:book_id>")
    def replace_book(book_id: int):
        if store.get(book_id) is None:
            return error(404, f"no book with id {book_id}")
        fields, problem = parse_book(request.get_json(silent=True))
        if problem:
            return error(400, problem)
        book = store.replace(book_id, fields)
        return jsonify(book) if book else error(404, f"no book with id {book_id}")

    @app.delete("/books/<int:book_id>")
    def delete_book(book_id: int):
        if not store.delete(book_id):
            return error(404, f"no book with id {book_id}")
        response = app.response_class(status=204)
        del response.headers["Content-Type"]  # a 204 has no body, so nothing to describe
        return response

    return app


app = create_app()
