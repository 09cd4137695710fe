"""The peers' own venv (default bench/.venv-peers): the other WSGI servers, Flask and
matplotlib, installed with pip. Nothing here runs apt-get: missing system packages are named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PACKAGES = {
    "bjoern": "bjoern",
    "fastwsgi": "fastwsgi",
    "granian": "granian",
    "uwsgi": "uwsgi",
    "pyruvate": "pyruvate",
    "waitress": "waitress",
    "gunicorn": "gunicorn",
    "flask": "flask",
    "matplotlib": "matplotlib",
}
"""Import name -> pip name. The servers' names are the keys of servers.PEERS."""

_VERSIONS = """
import importlib.metadata as m, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def _has_libev() -> bool:
    return any(Path(d, "ev.h").exists() for d in ("/usr/include", "/usr/local/include"))


def system_hints() -> list[str]:
    """What the build of the C peers needs from the system and is missing, as apt-get lines."""
    hints = []
    if not _has_libev():
        hints.append("bjoern needs libev: apt-get install libev-dev")
    if not shutil.which("cc"):
        hints.append(
            "bjoern, uwsgi and fastwsgi need a C compiler: apt-get install build-essential"
        )
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        hints.append("C extensions need Python headers: apt-get install python3-dev")
    return hints


def versions(venv: Path) -> dict[str, str]:
    """Installed version of each package in PACKAGES (pip names), absent ones left out."""
    py = venv / "bin" / "python"
    if not py.exists():
        return {}
    out = subprocess.run(
        [str(py), "-c", _VERSIONS, *PACKAGES.values()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return json.loads(out.stdout or "{}")


def ensure(venv: Path, wanted: list[str], install: bool = True) -> dict[str, str]:
    """Make ``venv`` hold the ``wanted`` packages (import names); return what it holds.

    A package that fails to build is reported and left out: the suite runs the other peers.
    """
    have = versions(venv)
    missing = [PACKAGES[n] for n in wanted if PACKAGES[n] not in have]
    if not missing or not install:
        return have
    if "bjoern" in missing and not _has_libev():
        print("bench: skipping bjoern, it needs libev headers: apt-get install libev-dev")
        missing.remove("bjoern")
    if not (venv / "bin" / "python").exists():
        print(f"bench: creating the peers' venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    print(f"bench: installing into {venv}: {' '.join(missing)}")
    if subprocess.run([*pip, *missing], check=False).returncode != 0:
        for pkg in missing:  # one by one, so one package that does not build spares the rest
            if subprocess.run([*pip, pkg], check=False).returncode != 0:
                print(f"bench: {pkg} did not install; {'; '.join(system_hints()) or ''}")
    return versions(venv)
