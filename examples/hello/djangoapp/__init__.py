"""A one-view Django project.

Run from the repository root (needs ``pip install django``)::

    ferrule --chdir examples/hello djangoapp.wsgi:application
    curl http://127.0.0.1:8000/hello
"""
