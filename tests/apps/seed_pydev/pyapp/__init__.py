"""A PyDev application laid out like the seed's: views, settings and a wsgi module."""
