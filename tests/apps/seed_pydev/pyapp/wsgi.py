"""The module the seed's app.yaml names (app-module: wsgi, app: application)."""

import os

import pydev

os.environ.setdefault("PYDEV_SETTINGS_MODULE", "pyapp.settings")

application = pydev.get_wsgi_application()
