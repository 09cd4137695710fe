"""``python -m ferrule``: the same as the ``ferrule`` command."""

from ferrule.cli import main

main()
