"""Logging: --log-config (dictConfig in JSON, TOML, YAML), --error-logfile and its reopening
on SIGUSR1 after logrotate's rename, --log-format json, and an application that configures
logging itself (as Django does with LOGGING).

Every test starts the real server; when the error log goes to a file, the test waits on that
file instead of the process's output.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from conftest import LISTEN_RE, get, run_ferrule, wait_until
from ferrule import cli, logs

APP = "logcfg_app:app"


def listening(srv, path: Path, timeout: float = 15.0):
    """Wait until the error log file `path` says where `srv` listens; fill in srv's address."""

    def found():
        return LISTEN_RE.search(path.read_text()) if path.exists() else None

    m = wait_until(found, timeout=timeout, what=f"'Listening at' in {path}")
    srv.url = m.group(1)
    host, _, port = srv.url[len("http://") :].rpartition(":")
    srv.host, srv.port = host, int(port)
    return srv


def contains(path: Path, pattern: str):
    return lambda: path.exists() and re.search(pattern, path.read_text())


# --- --log-config --------------------------------------------------------------------------

DICT = {
    "version": 1,
    "formatters": {"cfg": {"format": "CFG %(levelname)s %(name)s [%(process)d] %(message)s"}},
    "handlers": {
        "file": {"class": "logging.FileHandler", "filename": "{log}", "formatter": "cfg"},
    },
    "loggers": {
        "ferrule.error": {"handlers": ["file"], "level": "INFO", "propagate": False},
        "logcfg_app": {"handlers": ["file"], "level": "INFO", "propagate": False},
    },
}

TOML = """\
version = 1

[formatters.cfg]
format = "CFG %(levelname)s %(name)s [%(process)d] %(message)s"

[handlers.file]
class = "logging.FileHandler"
filename = "{log}"
formatter = "cfg"

[loggers."ferrule.error"]
handlers = ["file"]
level = "INFO"
propagate = false

[loggers.logcfg_app]
handlers = ["file"]
level = "INFO"
propagate = false
"""

YAML = """\
# Django's LOGGING, as YAML
version: 1
formatters:
  cfg:
    format: "CFG %(levelname)s %(name)s [%(process)d] %(message)s"
handlers:
  file:
    class: logging.FileHandler
    filename: "{log}"
    formatter: cfg
loggers:
  ferrule.error: {handlers: [file], level: INFO, propagate: false}
  logcfg_app: {handlers: [file], level: INFO, propagate: false}
"""


def write_log_config(tmp_path: Path, suffix: str, log: Path) -> Path:
    path = tmp_path / f"logging{suffix}"
    if suffix == ".json":
        text = json.dumps(DICT).replace("{log}", str(log))
    else:
        text = (TOML if suffix == ".toml" else YAML).replace("{log}", str(log))
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "suffix, workers", [(".json", "1"), (".toml", "1"), (".yaml", "2"), (".yml", "1")]
)
def test_log_config_sends_ferrule_error_to_a_file(start_server, tmp_path, suffix, workers):
    log = tmp_path / "ferrule.log"
    cfg = write_log_config(tmp_path, suffix, log)
    srv = start_server("--log-config", str(cfg), "-w", workers, APP, ready=False)
    listening(srv, log)
    if workers != "1":
        wait_until(contains(log, r"Ready: 2 workers serving"))
    status, body = get(srv.host, srv.port, "/probe")
    assert status == 200
    pid = int(body.split("=")[1])
    wait_until(contains(log, rf"CFG ERROR ferrule\.error \[{pid}\] logcfg_app request /probe"))
    text = log.read_text()
    assert re.search(rf"CFG INFO ferrule\.error \[{srv.proc.pid}\] Listening at: ", text)
    # Applied before the application was imported: its import-time record is in the file.
    assert re.search(r"CFG WARNING logcfg_app \[\d+\] logcfg_app imported in pid", text)
    assert srv.stop() == 0
    assert "Listening at" not in srv.log  # ferrule's own stderr handler was not installed
    assert "Shutting down" in log.read_text()


def test_log_config_configures_the_access_logger_too(start_server, tmp_path):
    log, access = tmp_path / "ferrule.log", tmp_path / "access.log"
    data = json.loads(json.dumps(DICT).replace("{log}", str(log)))
    data["handlers"]["access"] = {"class": "logging.FileHandler", "filename": str(access)}
    data["loggers"]["ferrule.access"] = {"handlers": ["access"], "propagate": False}
    cfg = tmp_path / "logging.json"
    cfg.write_text(json.dumps(data))
    srv = start_server("--log-config", str(cfg), "--access-log", APP, ready=False)
    listening(srv, log)
    assert get(srv.host, srv.port, "/access-probe")[0] == 200
    wait_until(contains(access, r"GET /access-probe HTTP/1.1"), what="the access line")
    assert srv.stop() == 0


def test_log_config_file_handlers_are_reopened_on_usr1_in_every_worker(start_server, tmp_path):
    log = tmp_path / "ferrule.log"
    cfg = write_log_config(tmp_path, ".yaml", log)
    srv = start_server("--log-config", str(cfg), "-w", "2", APP, ready=False)
    listening(srv, log)
    wait_until(contains(log, r"Ready: 2 workers serving"))
    rotated = tmp_path / "ferrule.log.1"
    os.rename(log, rotated)  # what logrotate does
    srv.signal(signal.SIGUSR1)
    workers_seen: set[int] = set()

    def both_workers_write_the_new_file() -> bool:
        for _ in range(6):
            workers_seen.add(int(get(srv.host, srv.port, "/after")[1].split("=")[1]))
        text = log.read_text() if log.exists() else ""
        writers = {int(p) for p in re.findall(r"\[(\d+)\] logcfg_app request /after", text)}
        return len(workers_seen) == 2 and writers == workers_seen

    wait_until(both_workers_write_the_new_file, timeout=15, interval=0.1, what="reopened files")
    srv.signal(signal.SIGTTIN)  # the master logs it: into the new file too
    wait_until(contains(log, r"SIGTTIN: 3 workers"), what="the master writing the new file")
    assert "SIGTTIN" not in rotated.read_text()
    assert srv.stop() == 0


@pytest.mark.parametrize(
    "name, text, fragments",
    [
        ("bad.json", "{not json", ["invalid JSON"]),
        ("bad.toml", "version = ", ["invalid TOML"]),
        ("bad.yaml", "version: [1", ["invalid YAML"]),
        ("list.json", "[1, 2]", ["expected a mapping"]),
        (
            "class.json",
            json.dumps({"handlers": {"h": {"class": "no.such.Handler"}}}),
            ["Unable to configure handler 'h'"],
        ),
    ],
)
def test_a_bad_log_config_exits_2(tmp_path, name, text, fragments):
    path = tmp_path / name
    path.write_text(text)
    proc = run_ferrule("--log-config", str(path), "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"log config file {path}" in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr


def test_log_config_suffix_and_existence_are_checked(tmp_path):
    proc = run_ferrule("--log-config", "logging.ini", "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--log-config" in proc.stderr and "expected a .json, .toml, .yaml" in proc.stderr
    proc = run_ferrule("--log-config", "missing.json", "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 2
    assert "cannot read log config file missing.json" in proc.stderr


def test_error_logfile_is_ignored_with_a_warning_when_log_config_sets_ferrule_error(
    start_server, tmp_path
):
    log = tmp_path / "ferrule.log"
    cfg = write_log_config(tmp_path, ".json", log)
    unused = tmp_path / "unused.log"
    srv = start_server("--log-config", str(cfg), "--error-logfile", str(unused), APP, ready=False)
    listening(srv, log)
    assert re.search(r"error_logfile .*unused\.log is not used", log.read_text())
    assert not unused.exists()
    assert srv.stop() == 0


# --- an application that configures logging itself ----------------------------------------


def test_the_apps_own_logging_config_replaces_ferrules_handler(start_server, tmp_path):
    app_log = tmp_path / "app.log"
    srv = start_server("logcfg_django_style:app", env={"APP_LOG_FILE": str(app_log)})
    assert get(srv.host, srv.port)[0] == 200
    wait_until(contains(app_log, r"APPCFG ERROR ferrule\.error django-style request"))
    assert "APPCFG INFO ferrule.error Listening at" in app_log.read_text()
    assert srv.stop() == 0
    # ferrule's own handler is gone: no line in ferrule's format after the app's import, and
    # the record goes where the app's config sends it (its file, and the root's console).
    assert "[ERROR] django-style request" not in srv.log
    assert "APPCFG ERROR ferrule.error django-style request" in srv.log


# --- --error-logfile and SIGUSR1 -----------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_error_logfile_is_reopened_on_usr1_after_a_rename(start_server, tmp_path, workers):
    log = tmp_path / "error.log"
    srv = start_server("--error-logfile", str(log), "-w", workers, APP, ready=False)
    listening(srv, log)
    if workers == "2":
        wait_until(contains(log, r"Ready: 2 workers serving"))
    pid = int(get(srv.host, srv.port, "/before")[1].split("=")[1])
    wait_until(contains(log, rf"\[{pid}\] \[ERROR\] logcfg_app request /before"))
    rotated = tmp_path / "error.log.1"
    os.rename(log, rotated)
    srv.signal(signal.SIGUSR1)
    wait_until(log.exists, what="the reopened file")  # the master's, or the single process's
    seen: set[int] = set()

    def every_process_writes_the_new_file() -> bool:
        for _ in range(6):
            seen.add(int(get(srv.host, srv.port, "/after")[1].split("=")[1]))
        text = log.read_text() if log.exists() else ""
        writers = {
            int(p) for p in re.findall(r"\[(\d+)\] \[ERROR\] logcfg_app request /after", text)
        }
        return len(seen) == int(workers) and writers == seen

    wait_until(every_process_writes_the_new_file, timeout=15, interval=0.1, what="reopened")
    if workers == "2":
        srv.signal(signal.SIGTTIN)
        wait_until(contains(log, r"SIGTTIN: 3 workers"), what="the master writing the new file")
        assert "SIGTTIN" not in rotated.read_text()
    else:
        assert "/after" not in rotated.read_text()
    assert srv.stop() == 0
    assert "Listening at" not in srv.log  # nothing on stderr: it all went to the file
    assert "Shutting down" in log.read_text()


def test_an_error_logfile_that_cannot_be_opened_exits_2(tmp_path):
    proc = run_ferrule("--error-logfile", "no/such/dir/error.log", "cli_hello:app", cwd=tmp_path)
    assert proc.returncode == 2
    assert "cannot open error_logfile no/such/dir/error.log: No such file" in proc.stderr


def test_log_file_is_an_alias_and_dash_means_stderr(start_server, tmp_path):
    assert cli.parse(["--log-file", "x.log", "m:app"]).settings.error_logfile == "x.log"
    assert cli.parse(["m:app"]).settings.error_logfile == "-"
    srv = start_server("--error-logfile", "-", APP)  # waits for "Listening at" on stderr
    assert srv.stop() == 0


# --- --log-format json ---------------------------------------------------------------------


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_log_format_json(start_server, tmp_path, workers):
    srv = start_server("--log-format", "json", "-w", workers, APP, ready=False)
    m = srv.wait_for_log(r'"message": "Listening at: (http://[^"]+)"')
    host, _, port = m.group(1)[len("http://") :].rpartition(":")
    srv.host, srv.port = host, int(port)
    if workers == "2":
        srv.wait_for_log(r"Ready: 2 workers serving")
    assert get(srv.host, srv.port, "/raise")[0] == 500
    srv.wait_for_log(r"logcfg_app: boom")
    assert srv.stop() == 0
    lines = srv.log.splitlines()
    for line in lines:  # every line is JSON, except the app's own logger (no handler)
        assert line.startswith("{") or "logcfg_app imported" in line, line
    entries = json_lines(srv.log)
    for e in entries:
        assert set(e) >= {"timestamp", "level", "logger", "pid", "message"}
        assert e["logger"] == "ferrule.error"
        assert datetime.datetime.fromisoformat(e["timestamp"]).tzinfo is not None
        assert isinstance(e["pid"], int)
    (listen,) = [e for e in entries if e["message"].startswith("Listening at:")]
    assert listen["level"] == "INFO" and listen["pid"] == srv.proc.pid
    (failure,) = [e for e in entries if "exc_info" in e]
    assert failure["level"] == "ERROR"
    assert failure["exc_info"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: logcfg_app: boom" in failure["exc_info"]
    if workers == "2":
        assert failure["pid"] != srv.proc.pid


def test_json_formatter_in_a_log_config_file(start_server, tmp_path):
    log = tmp_path / "json.log"
    cfg = tmp_path / "logging.yaml"
    cfg.write_text(
        "version: 1\n"
        "formatters: {json: {(): ferrule.logs.JsonFormatter}}\n"
        f"handlers: {{file: {{class: logging.FileHandler, filename: '{log}', formatter: json}}}}\n"
        "loggers: {ferrule: {handlers: [file], level: INFO}}\n"
    )
    srv = start_server("--log-config", str(cfg), APP, ready=False)
    wait_until(contains(log, r"Listening at"))
    entries = json_lines(log.read_text())
    assert any(e["message"].startswith("Listening at: http://") for e in entries)
    assert srv.stop() == 0


def test_json_formatter_record_fields():
    formatter = logs.JsonFormatter()
    try:
        raise ValueError("bad thing")
    except ValueError:
        record = logging.getLogger("ferrule.error").makeRecord(
            "ferrule.error", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info()
        )
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "failed: x" and entry["level"] == "ERROR"
    assert entry["logger"] == "ferrule.error" and entry["pid"] == os.getpid()
    assert "ValueError: bad thing" in entry["exc_info"]
    assert "\n" not in formatter.format(record)  # one line per record
