"""Real nginx and HAProxy in front of ferrule, for tests/test_proxies.py (issue 7).

Each proxy is a process of its own, started by the test (never the system service) with a
config file written into the test's tmp_path: nginx as ``nginx -p DIR -c DIR/nginx.conf -g
'daemon off;'`` with its pid file, logs and temp directories in DIR; HAProxy as ``haproxy -f
DIR/haproxy.cfg -db`` with its log on stdout and its stats socket in DIR. `Proxies` starts them,
waits until they answer (polling, no fixed sleep) and stops them at teardown. Everything
listens on 127.0.0.1 only.

Ports. Neither nginx nor HAProxy can listen on port 0 and report the port it got, so the
test picks the port and holds it: `ReservedPort` is a TCP socket bound to 127.0.0.1:0 with
SO_REUSEADDR that never listens. While it is open, the kernel gives that port to nobody who
lets the kernel choose (every other ``bind(port 0)``, every outgoing connection's ephemeral
port), so no concurrent test or process can take it between "pick" and "bind"; yet a server
that sets SO_REUSEADDR itself (nginx, HAProxy and ferrule all do) can bind and listen on it,
because Linux allows a second SO_REUSEADDR bind when the socket already there is not
listening. The reservation stays open until the test ends, which also lets a ferrule instance
be stopped and started again on the same address with no window in which the port is free
for someone else. (The other ways were worse: "bind, read the port, close, start the proxy"
races with every other bind; a unix socket on the client side would give nginx no client
address, which the X-Forwarded-For tests need.)

If nginx or HAProxy is not installed the test fails, loudly, naming the apt-get command:
CI (.ci/run) installs both, so a missing binary is a broken setup, not a reason to skip.

Adding the PROXY protocol and X-Forwarded-For tests: ``proxies.haproxy(servers,
mode="tcp", server_options="send-proxy-v2")`` puts ``send-proxy-v2`` on every backend
``server`` line; ``proxies.nginx([...], location="proxy_set_header X-Forwarded-For
$proxy_add_x_forwarded_for;")`` adds directives to the proxied location.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import ServerProcess, wait_until

INSTALL_HINT = "apt-get install nginx-light haproxy"
# Debian puts both in /usr/sbin, which is not on every user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
REQUEST_LOG_RE = re.compile(r"[0-9a-f.:\[\]]+:\d+ \S+/\S+ ")
# sockaddr_un.sun_path holds 108 bytes; longer tmp paths get a short directory under /tmp.
MAX_UNIX_PATH = 100


def find_binary(name: str) -> str:
    """The path of `name`; fails the test (never skips) when it is not installed."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        pytest.fail(
            f"{name} is not installed: tests/test_proxies.py runs a real {name} in front of "
            f"ferrule. Install it with `{INSTALL_HINT}` (.ci/run does this in CI).",
            pytrace=False,
        )
    return path


class ReservedPort:
    """A TCP port on `host` that nobody else can get until `close()` (see the module doc)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host: str = host
        self.port: int = self.sock.getsockname()[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self.sock.close()


def upstream_address(srv: ServerProcess) -> str:
    """A ferrule server's address as nginx and HAProxy write it: HOST:PORT or unix:/path."""
    if srv.url.startswith("unix:"):
        return srv.url
    assert srv.port, f"ferrule has no TCP address: {srv.url!r}"
    return f"{srv.host}:{srv.port}"


class ProxyProcess:
    """A proxy started from a config file in its own directory; stdout and stderr go to
    `DIR/NAME.out` (`output`)."""

    name = "proxy"

    def __init__(self, workdir: Path, port: ReservedPort):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=False)
        self.host = port.host
        self.port = port.port
        self.out_path = self.dir / f"{self.name}.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def config(self) -> str:
        raise NotImplementedError

    def answers(self) -> bool:
        """True once the proxy serves (polled by `wait_ready`)."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ProxyProcess:
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=str(self.dir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> ProxyProcess:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with code {self.proc.returncode} before it served;"
                    f" config:\n{self.config()}\noutput:\n{self.output}"
                )
            return self.answers()

        wait_until(ready, timeout, 0.05, f"{self.name} to answer on {self.url}")
        return self

    @property
    def output(self) -> str:
        return self.out_path.read_text("utf-8", "replace") if self.out_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the proxy (`sig`, then SIGKILL after STOP_TIMEOUT); its exit code. SIGTERM is
        a fast stop for both (nginx stops gracefully on SIGQUIT, HAProxy on SIGUSR1)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _http_answers(host: str, port: int, path: str) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


class Nginx(ProxyProcess):
    """nginx reverse proxy: one ``server`` on the reserved port, ``location /`` proxied to
    the ``upstream ferrule`` group (`upstreams`, each ``HOST:PORT`` or ``unix:/path``) over
    HTTP/1.1 with `keepalive` idle connections kept per worker.

    `location`, `server` and `http` are extra directives for those blocks. The access log
    (`access_entries`, one dict per request, keys `ACCESS_FIELDS`) has the method, URI,
    status, upstream status and address, the upstream's Transfer-Encoding, request time;
    `errors` are the error.log lines at level error and above.
    """

    name = "nginx"
    READY_PATH = "/__nginx_ready"
    ACCESS_FIELDS = (
        "method",
        "uri",
        "status",
        "upstream_status",  # "502, 200" when nginx tried a second upstream
        "upstream_addr",
        "upstream_te",  # the upstream's Transfer-Encoding ("-" for none)
        "request_time",
    )

    def __init__(
        self,
        workdir: Path,
        port: ReservedPort,
        upstreams: list[str],
        keepalive: int = 16,
        location: str = "",
        server: str = "",
        http: str = "",
    ):
        super().__init__(workdir, port)
        self.binary = find_binary("nginx")
        self.upstreams = upstreams
        self.keepalive = keepalive
        self.extra = {"location": location, "server": server, "http": http}
        self.conf_path = self.dir / "nginx.conf"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.conf_path.write_text(self.config())

    def config(self) -> str:
        d = self.dir
        servers = "\n".join(f"        server {addr};" for addr in self.upstreams)
        # As root, nginx's workers would run as "nobody", which cannot enter pytest's 0700
        # tmp directories (temp files, ferrule's unix socket). Elsewhere the directive is moot.
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""\
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {self.error_log} warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format proxy_test '$request_method|$request_uri|$status|$upstream_status|'
                          '$upstream_addr|$upstream_http_transfer_encoding|$request_time';
    access_log {self.access_log} proxy_test;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream ferrule {{
{servers}
        keepalive {self.keepalive};
        # Below ferrule's --keep-alive (5 s): nginx drops an idle connection before ferrule
        # does, so it never sends a request on a connection ferrule is closing.
        keepalive_timeout 4s;
    }}
    server {{
        listen {self.host}:{self.port};
        location = {self.READY_PATH} {{
            access_log off;
            return 200 "nginx ready\\n";
        }}
        location / {{
            proxy_pass http://ferrule;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            {self.extra["location"]}
        }}
        {self.extra["server"]}
    }}
    {self.extra["http"]}
}}
"""

    def command(self) -> list[str]:
        return [self.binary, "-p", f"{self.dir}/", "-c", str(self.conf_path), "-g", "daemon off;"]

    def answers(self) -> bool:
        return _http_answers(self.host, self.port, self.READY_PATH)

    @property
    def errors(self) -> list[str]:
        """error.log lines at level error or worse (warn lines, such as a body buffered to a
        temp file, are not errors)."""
        if not self.error_log.exists():
            return []
        bad = ("[error]", "[crit]", "[alert]", "[emerg]")
        lines = self.error_log.read_text("utf-8", "replace").splitlines()
        return [line for line in lines if any(level in line for level in bad)]

    def access_entries(self) -> list[dict[str, str]]:
        if not self.access_log.exists():
            return []
        entries = []
        for line in self.access_log.read_text("utf-8", "replace").splitlines():
            entries.append(dict(zip(self.ACCESS_FIELDS, line.split("|"))))
        return entries


class HAProxy(ProxyProcess):
    """HAProxy: frontend ``fe`` on the reserved port, backend ``be`` with one ``server NAME
    ADDRESS SERVER_OPTIONS`` line per entry of `servers`, in `mode` (http or tcp).

    `defaults`, `frontend` and `backend` are extra lines for those sections. Each request (tcp
    mode: connection) is logged on stdout (`log_lines`) as ``client backend/server status
    retries termination-state timers ...``: http mode ``... Tw/Tc/Tr/Ta "request line"``, tcp
    mode has ``-`` for the status and ``Tw/Tc/Tt bytes``. The retries field reads ``+N`` when
    the last attempt was redispatched to another server. The admin socket answers `stats()`
    and `server_status()`.
    """

    name = "haproxy"
    HTTP_LOG_FORMAT = "%ci:%cp %b/%s %ST %rc %ts %Tw/%Tc/%Tr/%Ta %{+Q}r"
    TCP_LOG_FORMAT = "%ci:%cp %b/%s - %rc %ts %Tw/%Tc/%Tt %B"

    def __init__(
        self,
        workdir: Path,
        port: ReservedPort,
        servers: dict[str, str],
        mode: str = "http",
        server_options: str = "",
        defaults: Sequence[str] = (),
        frontend: Sequence[str] = (),
        backend: Sequence[str] = (),
        stats_path: Path | None = None,
    ):
        super().__init__(workdir, port)
        self.binary = find_binary("haproxy")
        self.servers = servers
        self.mode = mode
        self.server_options = server_options
        self.extra = {"defaults": defaults, "frontend": frontend, "backend": backend}
        self.stats_path = stats_path or self.dir / "stats.sock"
        self.conf_path = self.dir / "haproxy.cfg"
        self.conf_path.write_text(self.config())

    def config(self) -> str:
        def lines(items) -> str:
            return "".join(f"    {item}\n" for item in items)

        log_format = self.HTTP_LOG_FORMAT if self.mode == "http" else self.TCP_LOG_FORMAT
        servers = [
            f"server {name} {addr} {self.server_options}".rstrip()
            for name, addr in self.servers.items()
        ]
        return (
            "global\n"
            + lines(
                [
                    "log stdout format raw local0 info",
                    f"stats socket {self.stats_path} mode 600 level admin",
                    "maxconn 1000",
                ]
            )
            + "defaults\n"
            + lines(
                [
                    f"mode {self.mode}",
                    "log global",
                    "timeout connect 2s",
                    "timeout client 15s",
                    "timeout server 15s",
                    *self.extra["defaults"],
                ]
            )
            + "frontend fe\n"
            + lines(
                [f"bind {self.host}:{self.port}", f'log-format "{log_format}"']
                + list(self.extra["frontend"])
            )
            + "    default_backend be\n"
            + "backend be\n"
            + lines([*self.extra["backend"], *servers])
        )

    def command(self) -> list[str]:
        return [self.binary, "-f", str(self.conf_path), "-db"]

    def answers(self) -> bool:
        # HAProxy binds its listeners before it serves the admin socket; probing the frontend
        # itself would log a bad request.
        try:
            return "Pid:" in self.command_socket("show info")
        except OSError:
            return False

    def command_socket(self, command: str, timeout: float = 5.0) -> str:
        """One command on HAProxy's admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.stats_path))
            sock.sendall(command.encode() + b"\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.decode("utf-8", "replace")

    def stats(self) -> list[dict[str, str]]:
        """``show stat`` as one dict per row (pxname, svname, status, check_status, ...)."""
        text = self.command_socket("show stat").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def server_status(self, name: str) -> str:
        """The backend server's state as HAProxy's checks see it: UP, DOWN, ..."""
        for row in self.stats():
            if row["pxname"] == "be" and row["svname"] == name:
                return row["status"]
        raise AssertionError(f"no server {name!r} in HAProxy's stats")

    def wait_server_up(self, name: str, timeout: float = 10.0) -> None:
        wait_until(
            lambda: self.server_status(name) == "UP",
            timeout,
            0.05,
            f"HAProxy to see server {name} UP",
        )

    def log_lines(self) -> list[str]:
        """The request log lines (not the server state changes, also on stdout)."""
        return [line for line in self.output.splitlines() if REQUEST_LOG_RE.match(line)]


def short_dir(tmp_path: Path) -> Path:
    """A directory for unix sockets: tmp_path, or a short one in /tmp when tmp_path is too
    long for sockaddr_un (removed by `Proxies`)."""
    if len(str(tmp_path)) + 20 <= MAX_UNIX_PATH:
        return tmp_path
    return Path(tempfile.mkdtemp(prefix="ferrule-", dir="/tmp"))


class Proxies:
    """Starts proxies for one test (in `tmp_path`) and stops them all on exit.

    ``with Proxies(tmp_path) as proxies:`` then `reserve_port()`, `nginx(...)`,
    `haproxy(...)`; every proxy is started and answering when returned.
    """

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[ProxyProcess] = []
        self.ports: list[ReservedPort] = []
        self._short_dirs: list[Path] = []
        self._socket_dir: Path | None = None

    def __enter__(self) -> Proxies:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proxy in reversed(self.started):
            proxy.stop()
        for port in self.ports:
            port.close()
        for path in self._short_dirs:
            shutil.rmtree(path, ignore_errors=True)

    def reserve_port(self) -> ReservedPort:
        port = ReservedPort()
        self.ports.append(port)
        return port

    def socket_path(self, name: str) -> Path:
        """A path for a unix socket, short enough for sockaddr_un."""
        if self._socket_dir is None:
            self._socket_dir = short_dir(self.tmp_path)
            if self._socket_dir != self.tmp_path:
                self._short_dirs.append(self._socket_dir)
        return self._socket_dir / name

    def _workdir(self, name: str) -> Path:
        n = sum(1 for p in self.started if p.name == name)
        return self.tmp_path / f"{name}{n}"

    def _start(self, proxy: ProxyProcess) -> ProxyProcess:
        self.started.append(proxy)
        return proxy.start().wait_ready()

    def nginx(self, upstreams: list[str], **options) -> Nginx:
        """Start nginx proxying to `upstreams` (see `Nginx` for the options)."""
        proxy = Nginx(self._workdir("nginx"), self.reserve_port(), upstreams, **options)
        self._start(proxy)
        return proxy

    def haproxy(self, servers: dict[str, str], **options) -> HAProxy:
        """Start HAProxy balancing over `servers` (name: HOST:PORT; see `HAProxy`)."""
        workdir = self._workdir("haproxy")
        options.setdefault("stats_path", self.socket_path(f"{workdir.name}.stat"))
        proxy = HAProxy(workdir, self.reserve_port(), servers, **options)
        self._start(proxy)
        return proxy
