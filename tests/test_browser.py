"""A real browser through ferrule (issue 7): headless Chromium (Debian's `chromium`) loads
the Django admin login page. The page comes from Django; its CSS and JS from `--static`
(served by the Rust core). No request may fail, which the access log shows, and the
screenshot (kept in the test artefacts) shows the styled page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import APPS

pytestmark = pytest.mark.timeout(120)

ARTIFACTS = Path(os.environ.get("FERRULE_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
# The admin's header colour (django/contrib/admin/static/admin/css/base.css, --header-bg).
HEADER_BG = (0x41, 0x76, 0x90)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: apt-get install chromium (.ci/run does this in CI)")


def run_browser(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",  # tests run as root in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--user-data-dir={cwd / 'profile'}",
    ]
    return subprocess.run(
        [chromium(), *flags, *args],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def django_admin(tmp_path):
    """The project's database migrated and its static files collected into tmp_path."""
    env = {**os.environ, "DJANGO_ADMIN_DIR": str(tmp_path), "PYTHONPATH": str(APPS)}
    for command in (["collectstatic", "--noinput"], ["migrate", "--noinput"]):
        proc = subprocess.run(
            [sys.executable, str(APPS / "django_admin_app.py"), *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
    return tmp_path


def header_pixels(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
        return sum(count for count, color in colors if color == HEADER_BG)


def test_chromium_loads_the_django_admin_login_page(start_server, django_admin, tmp_path):
    log = tmp_path / "access.log"
    srv = start_server(
        "--static",
        f"/static={django_admin / 'static'}",
        "--access-logfile",
        str(log),
        "django_admin_app:application",
        env={"DJANGO_ADMIN_DIR": str(django_admin)},
    )
    url = f"http://127.0.0.1:{srv.port}/admin/"
    dom = run_browser("--dump-dom", url, cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-3000:]
    assert 'id="login-form"' in dom.stdout, dom.stdout[:3000]
    assets = set(re.findall(r'(?:href|src)="(/static/[^"]+)"', dom.stdout))
    assert any(a.endswith(".css") for a in assets) and any(a.endswith(".js") for a in assets)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "django-admin-login.png"
    shot.unlink(missing_ok=True)
    done = run_browser("--window-size=1280,800", f"--screenshot={shot}", url, cwd=tmp_path)
    assert done.returncode == 0 and shot.exists(), done.stderr[-3000:]
    # The admin's CSS was applied: its blue header is on the page (unstyled, it is not).
    assert header_pixels(shot) > 10_000, f"no styled header in {shot}"

    srv.stop()  # writes out the access log
    lines = log.read_text().splitlines()
    browser = [x for x in lines if "HeadlessChrome" in x]
    requests = {m[1]: int(m[2]) for x in browser if (m := re.search(r'"GET (\S+) [^"]*" (\d+)', x))}
    failed = {path: status for path, status in requests.items() if status >= 400}
    assert failed == {}, lines
    assert requests.get("/admin/login/?next=/admin/") == 200
    for asset in assets:  # every stylesheet and script of the page, from --static
        assert requests.get(asset) in (200, 304), (asset, lines)
