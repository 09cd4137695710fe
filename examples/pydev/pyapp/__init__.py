"""An application built on the PyDev framework: views, settings, and the WSGI module."""
