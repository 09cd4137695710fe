"""The service manager's side channels: socket activation (``LISTEN_FDS``) and ``sd_notify``.

Both are plain protocols, no libsystemd needed: systemd passes listening sockets as fds 3, 4, ...
with ``LISTEN_FDS`` (their count) and ``LISTEN_PID`` (the process they are meant for), and
listens for ``READY=1``/``STOPPING=1`` datagrams on the unix socket named by ``NOTIFY_SOCKET``
(a leading ``@`` means an abstract socket name).
"""

from __future__ import annotations

import logging
import os
import socket

from ferrule import logs

log = logging.getLogger(logs.ERROR_LOGGER)

LISTEN_FDS_START = 3
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def listen_fds() -> list[int]:
    """The fds systemd passed to this process, or [] if none; the variables are unset.

    They are unset whatever their value, so that workers and the application's own children
    never take the sockets for theirs.
    """
    pid, count = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    for name in _LISTEN_VARS:
        os.environ.pop(name, None)
    if not (pid.strip().isdigit() and count.strip().isdigit()):
        return []
    if int(pid) != os.getpid():
        return []
    return list(range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)))


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to ``$NOTIFY_SOCKET``; False if unset or it failed."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify %r to %r failed: %s", state, address, exc)
        return False
    return True
