"""An app that configures logging itself while being imported, as Django does with its
LOGGING setting: `ferrule.error` goes to the file named by $APP_LOG_FILE (propagate left
unset), the root logger to stderr."""

import logging.config
import os

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": True,
        "formatters": {"plain": {"format": "APPCFG %(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": os.environ["APP_LOG_FILE"],
                "formatter": "plain",
            },
            "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        },
        "loggers": {"ferrule.error": {"handlers": ["file"], "level": "INFO"}},
        "root": {"handlers": ["console"], "level": "WARNING"},
    }
)


def app(environ, start_response):
    environ["wsgi.errors"].write("django-style request\n")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
