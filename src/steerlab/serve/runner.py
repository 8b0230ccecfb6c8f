"""Run the server: in this thread until interrupted (the CLI), or in a background thread (tests).

Two things uvicorn does not do by itself are added here:

* **a header timeout**: uvicorn's ``timeout_keep_alive`` only runs between requests and is
  cancelled by the first byte of the next one, so a client sending half a request line holds its
  connection forever. :func:`header_timeout_protocol` closes a connection whose request headers
  are not complete ``read_timeout_s`` after it opened (or after its previous response);
* **a bounded shutdown**: on Ctrl-C / SIGTERM requests in progress get ``GRACE_S`` seconds to
  finish; then the service ends them at their next decode step (a 503 "shutting down", not a
  cancelled task and its traceback), well within uvicorn's ``timeout_graceful_shutdown``.

Example:
    >>> handle = start_server(create_app(lm), port=0)   # a free port on 127.0.0.1
    >>> handle.url                                      # 'http://127.0.0.1:PORT/v1'
    >>> handle.shutdown()
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds requests in progress may go on after a shutdown signal before they are ended.
GRACE_S = 3.0
#: uvicorn's limit for the whole graceful shutdown (the documented bound).
SHUTDOWN_S = 5


def header_timeout_protocol(seconds: float | None) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request headers take over ``seconds``."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if seconds is not None:
                if self._header_timer is not None:
                    self._header_timer.cancel()
                self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _headers_late(self) -> None:
            self._header_timer = None
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # the request line / headers did not arrive in time

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

    return HeaderTimeoutProtocol


class _Server(uvicorn.Server):
    """uvicorn's server; on shutdown, ends the app's requests still running after ``GRACE_S``."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        service = getattr(getattr(getattr(self.config.app, "state", None), "steerlab", None), "abort_all", None)
        if service is not None:
            asyncio.get_running_loop().call_later(GRACE_S, service)
        await super().shutdown(sockets)


class ServerHandle:
    """A server running in a background thread.

    Attributes:
        server_address: ``(host, port)`` actually bound (port 0 asks for a free one).
        app: the ASGI application being served.
    """

    def __init__(self, server: _Server, sock: socket.socket, thread: threading.Thread, app: Any) -> None:
        self._server = server
        self._sock = sock
        self._thread = thread
        self.app = app
        self.server_address: tuple[str, int] = sock.getsockname()[:2]

    @property
    def url(self) -> str:
        """The OpenAI-style base URL, ``http://HOST:PORT/v1``."""
        host, port = self.server_address
        return f"http://{host}:{port}/v1"

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread (open connections get ``timeout`` seconds to finish)."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``(host, port)`` (IPv6 when ``host`` contains a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        from steerlab.errors import InputError

        raise InputError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _config(app: Any, *, access_log: bool) -> uvicorn.Config:
    state = getattr(getattr(app, "state", None), "steerlab", None)
    read_timeout = state.config.read_timeout_s if state is not None else None
    config = uvicorn.Config(
        app,
        http=header_timeout_protocol(read_timeout),
        log_level="warning",
        lifespan="on",
        access_log=access_log,
        timeout_graceful_shutdown=SHUTDOWN_S,
    )
    if access_log:  # one line per request ('127.0.0.1:5123 - "POST /v1/completions HTTP/1.1" 200')
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return config


def start_server(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, ready_timeout: float = 30.0, access_log: bool = False
) -> ServerHandle:
    """Serve ``app`` with uvicorn in a daemon thread; returns once it accepts connections."""
    sock = bind(host, port)
    server = _Server(_config(app, access_log=access_log))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="steerlab-serve")
    thread.start()
    deadline = time.monotonic() + ready_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    return ServerHandle(server, sock, thread, app)


def run_server(app: Any, host: str, port: int, on_ready: Any = None, *, access_log: bool = True) -> None:
    """Serve ``app`` in this thread until Ctrl-C / SIGTERM (uvicorn's signal handling)."""
    sock = bind(host, port)
    server = _Server(_config(app, access_log=access_log))
    if on_ready is not None:
        on_ready(sock.getsockname()[:2])
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
