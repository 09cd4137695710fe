"""An app that raises while being imported."""

raise RuntimeError("cli_raises blew up at import time")
