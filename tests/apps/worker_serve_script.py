"""`ferrule.serve(app, workers=2)` from a script: the workers fork from this process."""

import sys

import ferrule
from worker_app import app

if __name__ == "__main__":
    ferrule.serve(app, bind=sys.argv[1], workers=2, threads=2)
