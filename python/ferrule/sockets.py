"""Listening sockets: parse bind specs (``HOST:PORT``, ``unix:PATH``, ``fd://N``) and open them.

The Rust core receives the file descriptors of the sockets made here (it dup()s them and sets
them non-blocking); Python keeps the socket objects open until the server has stopped.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class BindError(OSError):
    """A listening socket could not be created; the message names the bind spec."""


@dataclass(frozen=True)
class BindSpec:
    """One parsed ``--bind`` value."""

    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        return format_hostport(self.host, self.port)


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets (``[::1]:8000``)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def parse_bind(spec: str) -> BindSpec:
    """Parse one bind spec; raise ValueError with a readable message if it is malformed.

    Accepted forms: ``HOST:PORT``, ``[IPV6]:PORT``, ``HOST`` (port 8000), ``PORT`` (on
    127.0.0.1), ``tcp://HOST:PORT``, ``unix:PATH`` and ``fd://N``.
    """
    if not isinstance(spec, str):
        raise ValueError(f"expected an address string, got {spec!r}")
    text = spec.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):  # unix:///run/app.sock
            path = path[2:]
        if not path:
            raise ValueError(f"{spec!r}: unix socket path is empty")
        return BindSpec("unix", path=path)
    if text.startswith("fd://"):
        num = text[len("fd://") :]
        if not num.isdigit():
            raise ValueError(f"{spec!r}: expected fd://N with N a file descriptor number")
        return BindSpec("fd", fd=int(num))
    if text.startswith("tcp://"):
        text = text[len("tcp://") :]
    host, port = _split_hostport(spec, text)
    return BindSpec("tcp", host=host, port=port)


def _split_hostport(spec: str, text: str) -> tuple[str, int]:
    if text.isdigit():
        return DEFAULT_HOST, _port(spec, text)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{spec!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        try:
            socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        except OSError:
            raise ValueError(f"{spec!r}: {host!r} is not an IPv6 address") from None
        if not rest:
            return host, DEFAULT_PORT
        if not rest.startswith(":"):
            raise ValueError(f"{spec!r}: expected ':PORT' after ']'")
        return host, _port(spec, rest[1:])
    if text.count(":") > 1:
        raise ValueError(f"{spec!r}: write IPv6 addresses in brackets, like [::1]:8000")
    host, sep, port = text.partition(":")
    if not host and sep:
        host = "0.0.0.0"
    if not sep:
        return host, DEFAULT_PORT
    return host, _port(spec, port)


def _port(spec: str, text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{spec!r}: port {text!r} is not a number")
    port = int(text)
    if port > 65535:
        raise ValueError(f"{spec!r}: port {port} is out of range 0-65535")
    return port


class Listener:
    """An open listening socket plus what is needed to describe and clean it up."""

    def __init__(self, spec: BindSpec, sock: socket.socket, owns_path: bool = False):
        self.spec = spec
        self.sock = sock
        self._inode = _inode(spec.path) if owns_path else None
        self.tls = False
        """Served with TLS (``certfile``): the URL says ``https``."""

    @property
    def url(self) -> str:
        """``http(s)://HOST:PORT`` with the real port, or ``unix:PATH``."""
        if self.sock.family == socket.AF_UNIX:
            name = self.sock.getsockname()
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            return f"unix:{name or self.spec.path}"
        host, port = self.sock.getsockname()[:2]
        return ("https://" if self.tls else "http://") + format_hostport(host, port)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close_fd(self) -> None:
        """Close this process's descriptor only (the core holds a dup of its own, or a stop
        begins); ``close()`` still removes the unix socket file later."""
        self.sock.close()

    def close(self) -> None:
        """Close the socket; remove the unix socket file if it is still the one we made."""
        self.sock.close()
        if self._inode is not None and _inode(self.spec.path) == self._inode:
            try:
                os.unlink(self.spec.path)
            except OSError:
                pass


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def open_listeners(
    specs: list[str] | tuple[str, ...],
    backlog: int,
    reuse_port: bool = False,
    listen: bool = True,
) -> list[Listener]:
    """Open every bind spec in order; on failure close what was opened and raise BindError.

    ``reuse_port`` sets SO_REUSEPORT on TCP sockets; with ``listen=False`` TCP sockets are
    only bound (a master holding the address for workers that open their own, see
    ``reuse_port_twin``).
    """
    listeners: list[Listener] = []
    try:
        for text in specs:
            listeners.append(open_listener(parse_bind(text), backlog, reuse_port, listen))
    except BaseException:
        for lst in listeners:
            lst.close()
        raise
    return listeners


def open_listener(
    spec: BindSpec, backlog: int, reuse_port: bool = False, listen: bool = True
) -> Listener:
    if spec.kind == "unix":
        return Listener(spec, _unix_socket(spec, backlog), owns_path=True)
    if spec.kind == "fd":
        return Listener(spec, _fd_socket(spec))
    return Listener(spec, _tcp_socket(spec, backlog, reuse_port, listen))


def reuse_port_twin(listener: Listener, backlog: int) -> socket.socket:
    """A new listening socket on the address of ``listener`` (a TCP socket bound with
    SO_REUSEPORT): each worker calls this to get a socket of its own."""
    family = listener.sock.family

    def setup(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            v6only = listener.sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)

    return _bound(
        socket.socket(family, socket.SOCK_STREAM),
        listener.sock.getsockname(),
        backlog,
        f"{listener.spec} again",
        setup=setup,
        reuse_addr=True,
    )


def is_tcp(listener: Listener) -> bool:
    return listener.sock.family in (socket.AF_INET, socket.AF_INET6)


def _tcp_socket(
    spec: BindSpec, backlog: int, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            spec.host or None, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"cannot bind {spec}: cannot resolve host {spec.host!r}: {exc}") from exc
    family, type_, proto, _, addr = infos[0]

    def setup(sock: socket.socket) -> None:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)

    return _bound(
        socket.socket(family, type_, proto),
        addr,
        backlog if listen else None,
        str(spec),
        setup=setup,
        reuse_addr=True,
    )


def _unix_socket(spec: BindSpec, backlog: int) -> socket.socket:
    path = spec.path
    _remove_stale_unix_socket(spec)
    return _bound(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path, backlog, str(spec))


def _bound(
    sock: socket.socket,
    addr: Any,
    backlog: int | None,
    what: str,
    setup: Callable[[socket.socket], None] | None = None,
    reuse_addr: bool = False,
) -> socket.socket:
    """Binds ``sock`` to ``addr`` (after ``setup``) and listens unless ``backlog`` is None;
    closes it and raises BindError naming ``what`` if that fails. Not inherited by exec."""
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if setup is not None:
            setup(sock)
        sock.bind(addr)
        if backlog is not None:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {what}: {exc.strerror or exc}") from exc
    sock.set_inheritable(False)
    return sock


def _remove_stale_unix_socket(spec: BindSpec) -> None:
    """Unlink ``spec.path`` if it is a socket nobody accepts on; refuse anything else."""
    try:
        st = os.stat(spec.path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BindError(f"cannot bind {spec}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(f"cannot bind {spec}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(spec.path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(spec.path)  # stale: left behind by a server that is gone
        return
    except OSError as exc:
        raise BindError(f"cannot bind {spec}: {exc.strerror}") from exc
    finally:
        probe.close()
    raise BindError(f"cannot bind {spec}: another server is listening on it")


def _fd_socket(spec: BindSpec) -> socket.socket:
    try:
        sock = socket.socket(fileno=spec.fd)
    except OSError as exc:
        raise BindError(f"cannot use {spec}: {exc.strerror or exc}") from exc
    try:
        if sock.type != socket.SOCK_STREAM:
            raise BindError(f"cannot use {spec}: not a stream socket")
        acceptconn = getattr(socket, "SO_ACCEPTCONN", None)
        if acceptconn is not None and not sock.getsockopt(socket.SOL_SOCKET, acceptconn):
            raise BindError(f"cannot use {spec}: the socket is not listening")
    except BaseException:
        sock.detach()  # not ours to close
        raise
    sock.set_inheritable(False)
    return sock
