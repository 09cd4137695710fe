"""ferrule: a WSGI (PEP 3333) HTTP/1.1 server with a Rust core.

Run it from the command line (``ferrule module:app``, ``python -m ferrule``) or from Python::

    import ferrule
    ferrule.serve(app, host="0.0.0.0", port=8080, threads=16)
"""

from __future__ import annotations

from ferrule.server import serve

try:
    from ferrule._ferrule import __version__
except ImportError:  # the Rust core is not built (e.g. running from a source checkout)
    try:
        from importlib.metadata import version

        __version__ = version("ferrule")
    except Exception:
        __version__ = "0+unknown"

__all__ = ["__version__", "serve"]
