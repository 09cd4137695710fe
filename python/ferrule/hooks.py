"""gunicorn's server hooks, from a Python config file (``-c gunicorn.conf.py``).

ferrule calls them at the moments gunicorn does, with objects shaped like gunicorn's:

| hook | where | when |
|---|---|---|
| ``on_starting(server)`` | master / single process | before the sockets are opened |
| ``when_ready(server)`` | master / single process | once the sockets listen |
| ``pre_fork(server, worker)`` | master | just before a worker is forked |
| ``post_fork(server, worker)`` | worker | just after the fork, before the app is imported |
| ``post_worker_init(worker)`` | worker / single process | the app is loaded, before serving |
| ``worker_exit(server, worker)`` | worker / single process | when it stops serving |
| ``on_exit(server)`` | master / single process | just before the process exits |
| ``pre_request(worker, req)`` | where the request runs | before the app is called |
| ``post_request(worker, req, environ, resp)`` | where the request runs | after the response |

A single process (``-w 1`` without ``--master``) forks nothing, so ``pre_fork`` and
``post_fork`` are never called there; it is both the server and the worker for the others.

A hook that raises is logged with its traceback. As in gunicorn, an exception in
``on_starting`` or ``when_ready`` stops ferrule (exit code 1); one in ``post_fork`` or
``post_worker_init`` makes that worker fail to boot (exit code 3; in a single process, exit
code 1); one in ``pre_request`` fails the request (the app is not called: 500). Exceptions in
``pre_fork``, ``worker_exit``, ``on_exit`` and ``post_request`` are only logged.

``pre_request``/``post_request`` wrap the application in Python (``_RequestHooks``) only when
one of them is set: without them requests cost nothing more.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable
from urllib.parse import urlsplit

from ferrule import logs
from ferrule.gunicorn_conf import BY_GUNICORN, HOOK, HOOK_ARITY

log = logging.getLogger(logs.ERROR_LOGGER)

App = Callable[..., Any]

FATAL_AT_START = ("on_starting", "when_ready")
FATAL_AT_BOOT = ("post_fork", "post_worker_init")


class HookError(RuntimeError):
    """A hook whose failure stops ferrule (or the worker booting) raised; the traceback is
    already logged."""


class HookLog:
    """``server.log`` / ``worker.log``: gunicorn's logger methods, on ``ferrule.error``."""

    def __init__(self) -> None:
        self.error_log = logging.getLogger(logs.ERROR_LOGGER)
        self.access_log = logging.getLogger(logs.ACCESS_LOGGER)

    def __getattr__(self, name: str) -> Any:  # critical, error, warning, info, debug, ...
        return getattr(self.error_log, name)

    def access(self, *args: Any, **kwargs: Any) -> None:
        """gunicorn writes its access line here; ferrule's core does that itself."""

    def reopen_files(self) -> None:
        logs.reopen_files()

    def close_on_exec(self) -> None:
        """ferrule's files are opened close-on-exec already (Python's default)."""


class HookConfig:
    """``server.cfg`` / ``worker.cfg``: the resolved settings, readable by ferrule's names
    (``cfg.worker_timeout``) and by gunicorn's (``cfg.timeout``, ``cfg.preload_app``)."""

    def __init__(self, resolved: Mapping[str, Any], hooks: Mapping[str, App]):
        self._settings = resolved
        self._hooks = hooks

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._settings:
            return self._settings[name]
        row = BY_GUNICORN.get(name)
        if row is not None and row.ferrule == HOOK:
            return self._hooks.get(name, _nothing)
        if row is not None and row.ferrule is not None and row.ferrule in self._settings:
            return self._settings[row.ferrule]
        if name == "env":
            pairs = (item.partition("=") for item in self._settings.get("raw_env", ()))
            return {key: value for key, _, value in pairs}
        if name == "address":
            return list(self._settings.get("bind", ()))
        if name == "worker_class_str":
            return "ferrule"
        raise AttributeError(f"ferrule has no setting {name!r}")


def _nothing(*args: Any) -> None:
    return None


class ListenerInfo:
    """One of ``server.LISTENERS`` / ``worker.sockets``: str() is the address, like
    gunicorn's listeners."""

    def __init__(self, listener: Any):
        self.listener = listener
        self.sock = listener.sock
        self._url = str(listener.url)  # kept: the socket may be closed by the time of on_exit

    def __str__(self) -> str:
        return self._url  # http://HOST:PORT or unix:PATH, as in gunicorn

    def __repr__(self) -> str:
        return f"<ListenerInfo {self}>"

    def fileno(self) -> int:
        return int(self.listener.fileno())

    def getsockname(self) -> Any:
        return self.sock.getsockname()


class ServerInfo:
    """The ``server`` hooks receive: what gunicorn's Arbiter offers hooks."""

    def __init__(
        self,
        resolved: Mapping[str, Any],
        hooks: Mapping[str, App],
        num_workers: Callable[[], int],
        master: bool,
    ):
        self.cfg = HookConfig(resolved, hooks)
        self.log = HookLog()
        self.pid = os.getpid()
        self.master = master
        """Whether this is a master with worker processes (False: one process serves)."""
        self.timeout = resolved["worker_timeout"]
        self.proc_name = "ferrule"
        self.LISTENERS: list[ListenerInfo] = []
        self.WORKERS: dict[int, WorkerInfo] = {}
        self._num_workers = num_workers

    @property
    def num_workers(self) -> int:
        return self._num_workers()

    def __repr__(self) -> str:
        return f"<ferrule server pid={self.pid} workers={self.num_workers}>"


class WorkerInfo:
    """The ``worker`` hooks receive: what gunicorn's Worker offers hooks. ``pid`` is
    ``"[booting]"`` in ``pre_fork`` (as in gunicorn), the worker's pid afterwards."""

    def __init__(self, server: ServerInfo, age: int):
        resolved = server.cfg._settings
        self.age = age
        self.pid: int | str = "[booting]"
        self.ppid = os.getpid()
        self.cfg = server.cfg
        self.log = server.log
        self.sockets = list(server.LISTENERS)
        self.timeout = resolved["worker_timeout"]
        self.max_requests = resolved["max_requests"] or sys.maxsize
        self.nr = 0
        """Requests this worker has started (counted only with pre_request/post_request)."""
        self.alive = True
        self.booted = False
        self.aborted = False
        self.wsgi: App | None = None
        """The WSGI application, once loaded."""

    def __str__(self) -> str:
        return f"<Worker {self.pid}>"

    __repr__ = __str__


class Request:
    """``req`` for pre_request/post_request, made from the environ like gunicorn's Request:
    ``method``, ``uri`` (the target as sent), ``path``, ``query``, ``fragment``, ``version``
    (``(1, 1)``), ``headers`` (a list of ``(NAME, value)``, names upper-cased), ``scheme``,
    ``remote_addr``/``peer_addr``. Hooks may set attributes of their own on it:
    post_request gets the same object."""

    def __init__(self, environ: Mapping[str, Any]):
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "")
        raw = environ.get("RAW_URI")
        if raw is None:
            query = environ.get("QUERY_STRING", "")
            raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            raw += f"?{query}" if query else ""
        self.uri: str = raw
        parts = urlsplit(raw)
        self.path: str = parts.path
        self.query: str = parts.query
        self.fragment: str = parts.fragment
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        major, _, minor = protocol.partition("/")[2].partition(".")
        self.version = (int(major or 1), int(minor or 0))
        self.scheme: str = environ.get("wsgi.url_scheme", "http")
        port = environ.get("REMOTE_PORT")
        address = environ.get("REMOTE_ADDR", "")
        self.remote_addr: Any = (address, int(port)) if port else address
        self.peer_addr = self.remote_addr
        self._headers: list[tuple[str, str]] | None = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            headers = []
            for key, value in self.environ.items():
                if key.startswith("HTTP_"):
                    headers.append((key[5:].replace("_", "-"), value))
                elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                    headers.append((key.replace("_", "-"), value))
            self._headers = headers
        return self._headers

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response:
    """``resp`` for post_request: ``status`` (``"200 OK"``, or None if the app failed before
    start_response), ``status_code``, ``headers`` (as the app gave them), ``headers_sent``,
    ``sent`` (body bytes handed to the server) and ``response_length`` (Content-Length)."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.status_code: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.sent = 0
        self.response_length: int | None = None

    def start(self, status: str, headers: list[tuple[str, str]]) -> None:
        self.status = status
        try:
            self.status_code = int(status.split(None, 1)[0])
        except (ValueError, IndexError):
            self.status_code = None
        self.headers = headers
        self.response_length = None
        for name, value in headers:
            if name.lower() == "content-length":
                try:
                    self.response_length = int(value)
                except ValueError:
                    pass

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class Hooks:
    """The hooks of one run (empty: every method does nothing), and the ``server`` and
    ``worker`` objects handed to them."""

    def __init__(self, funcs: Mapping[str, App] | None = None, source: str = ""):
        unknown = set(funcs or {}) - set(HOOK_ARITY)
        if unknown:
            raise ValueError(f"unknown hooks: {', '.join(sorted(unknown))}")
        self.funcs: dict[str, App] = dict(funcs or {})
        self.source = source
        self.server: ServerInfo | None = None

    def __bool__(self) -> bool:
        return bool(self.funcs)

    def __repr__(self) -> str:
        return f"Hooks({sorted(self.funcs)}, source={self.source!r})"

    def _run(self, name: str, *args: Any, fatal: bool = False) -> None:
        func = self.funcs.get(name)
        if func is None:
            return
        try:
            func(*args)
        except Exception as exc:
            where = f" ({self.source})" if self.source else ""
            if not fatal:
                log.exception("The %s hook%s raised an exception (ignored)", name, where)
                return
            log.exception("The %s hook%s raised an exception", name, where)
            raise HookError(f"the {name} hook{where} raised {type(exc).__name__}: {exc}") from exc

    # --- the master, or the single process ------------------------------------------------

    def starting(
        self, resolved: Mapping[str, Any], num_workers: Callable[[], int], master: bool
    ) -> ServerInfo:
        """Call ``on_starting`` (once per run); raise HookError if it fails."""
        if self.server is None:
            self.server = ServerInfo(resolved, self.funcs, num_workers, master)
            self._run("on_starting", self.server, fatal=True)
        return self.server

    def ready(self, listeners: Sequence[Any]) -> None:
        """The sockets listen: call ``when_ready``; raise HookError if it fails."""
        server = self._server()
        server.LISTENERS[:] = [ListenerInfo(lst) for lst in listeners]
        self._run("when_ready", server, fatal=True)

    def exit(self) -> None:
        if self.server is not None:
            self._run("on_exit", self.server)

    # --- workers --------------------------------------------------------------------------

    def new_worker(self, age: int) -> WorkerInfo:
        return WorkerInfo(self._server(), age)

    def pre_fork(self, worker: WorkerInfo) -> None:
        self._run("pre_fork", self._server(), worker)

    def forked(self, worker: WorkerInfo, pid: int) -> None:
        """In the master, after the fork."""
        worker.pid = pid
        self._server().WORKERS[pid] = worker

    def reaped(self, pid: int) -> None:
        if self.server is not None:
            self.server.WORKERS.pop(pid, None)

    def post_fork(self, worker: WorkerInfo) -> None:
        """In the new worker; raise HookError if the hook fails."""
        worker.pid = os.getpid()
        server = self._server()
        server.WORKERS.clear()
        server.WORKERS[worker.pid] = worker
        self._run("post_fork", server, worker, fatal=True)

    def single_worker(self, listeners: Sequence[Any]) -> WorkerInfo:
        """The worker object of a single process (no master): it is its own worker."""
        server = self._server()
        worker = WorkerInfo(server, 1)
        worker.pid = os.getpid()
        worker.ppid = os.getppid()
        worker.sockets = [ListenerInfo(lst) for lst in listeners]
        server.WORKERS[worker.pid] = worker
        return worker

    def post_worker_init(self, worker: WorkerInfo, app: App) -> None:
        """The app is loaded; raise HookError if the hook fails."""
        worker.wsgi = app
        self._run("post_worker_init", worker, fatal=True)
        worker.booted = True

    def worker_exit(self, worker: WorkerInfo) -> None:
        worker.alive = False
        self._run("worker_exit", self._server(), worker)

    def wrap(self, app: App, worker: WorkerInfo) -> App:
        """``app`` itself, or with pre_request/post_request around it when either is set."""
        pre = self.funcs.get("pre_request")
        post = self.funcs.get("post_request")
        if pre is None and post is None:
            return app
        return _RequestHooks(app, worker, pre, post, self.source)

    def _server(self) -> ServerInfo:
        if self.server is None:
            raise RuntimeError("Hooks.starting() was not called")
        return self.server


class _RequestHooks:
    """The application with pre_request/post_request around each call.

    post_request runs when the server closes the response (PEP 3333's ``close()``, which
    ferrule always calls), i.e. after the response was sent, or at once if the app raised.
    The response keeps the form that matters to the server: a list or tuple stays a list
    (sent in one write, with its Content-Length), a ``wsgi.file_wrapper`` stays one (sent
    with sendfile).
    """

    def __init__(
        self, app: App, worker: WorkerInfo, pre: App | None, post: App | None, source: str
    ):
        self.app = app
        self.worker = worker
        self.pre = pre
        self.post = post
        self.where = f" ({source})" if source else ""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        worker = self.worker
        worker.nr += 1
        req = Request(environ)
        resp = Response()

        def hooked_start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            resp.start(status, headers)
            write = start_response(status, headers, exc_info)

            def counting_write(data: bytes) -> Any:
                resp.headers_sent = True
                resp.sent += len(data)
                return write(data)

            return counting_write

        done = _Once(lambda: self._post(req, environ, resp))
        try:
            if self.pre is not None:
                self.pre(worker, req)
            result = self.app(environ, hooked_start_response)
        except BaseException:
            done()
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            return file_wrapper(_ClosingFile(result, resp, done), getattr(result, "blksize", 8192))
        if isinstance(result, (list, tuple)):
            return _ClosingList(result, resp, done)
        return _ClosingIterable(result, resp, done)

    def _post(self, req: Request, environ: Any, resp: Response) -> None:
        if self.post is None:
            return
        try:
            self.post(self.worker, req, environ, resp)
        except Exception:
            log.exception("The post_request hook%s raised an exception (ignored)", self.where)


class _Once:
    __slots__ = ("func",)

    def __init__(self, func: Callable[[], None]):
        self.func: Callable[[], None] | None = func

    def __call__(self) -> None:
        func, self.func = self.func, None
        if func is not None:
            func()


class _ClosingList(list):  # type: ignore[type-arg]
    """A list response (sent in one write by the core) whose close() runs post_request."""

    def __init__(self, items: Sequence[Any], resp: Response, done: _Once):
        super().__init__(items)
        self._resp = resp
        self._done = done
        self._close = getattr(items, "close", None)  # a list subclass may have one

    def close(self) -> None:
        try:
            if self._close is not None:
                self._close()
        finally:
            self._resp.headers_sent = True
            self._resp.sent += sum(len(item) for item in self if isinstance(item, bytes))
            self._done()


class _ClosingIterable:
    """Any other iterable: counts the bytes it yields; close() runs post_request."""

    def __init__(self, result: Any, resp: Response, done: _Once):
        self._result = result
        self._iter: Iterator[Any] | None = None
        self._resp = resp
        self._done = done

    def __iter__(self) -> _ClosingIterable:
        return self

    def __next__(self) -> Any:
        if self._iter is None:
            self._iter = iter(self._result)
        item = next(self._iter)
        self._resp.headers_sent = True
        if isinstance(item, bytes):
            self._resp.sent += len(item)
        return item

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class _ClosingFile:
    """The file of a ``wsgi.file_wrapper`` response, for a new file_wrapper: reads, fileno,
    tell and seek go to the app's file (so sendfile still works); close() closes the app's
    wrapper, then runs post_request."""

    def __init__(self, wrapper: Any, resp: Response, done: _Once):
        self._wrapper = wrapper
        self._file = wrapper.filelike
        self._resp = resp
        self._done = done
        try:
            self._start: int | None = int(self._file.tell())
        except Exception:
            self._start = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        try:
            if self._start is not None:
                try:
                    self._resp.sent += max(0, int(self._file.tell()) - self._start)
                except Exception:
                    pass
            self._resp.headers_sent = True
            self._wrapper.close()
        finally:
            self._done()
