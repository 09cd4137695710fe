"""An app whose import ends the process: a worker that dies while booting (not an ImportError)."""

import os

os._exit(7)
