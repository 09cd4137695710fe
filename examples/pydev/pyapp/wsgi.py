"""The module a server loads: ``application`` is this app's WSGI callable.

From the repository root, with the default or the French settings::

    ferrule -c examples/pydev/app.yaml
    PYDEV_SETTINGS_MODULE=pyapp.settings_fr ferrule -c examples/pydev/app.yaml
"""

import os

import pydev

os.environ.setdefault(pydev.ENVIRONMENT_VARIABLE, "pyapp.settings")

application = pydev.get_wsgi_application()
