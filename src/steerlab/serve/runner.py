"""Run the server: in this thread until interrupted (the CLI), or in a background thread (tests).

Example:
    >>> handle = start_server(create_app(lm), port=0)   # a free port on 127.0.0.1
    >>> handle.url                                      # 'http://127.0.0.1:PORT/v1'
    >>> handle.shutdown()
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class ServerHandle:
    """A server running in a background thread.

    Attributes:
        server_address: ``(host, port)`` actually bound (port 0 asks for a free one).
        app: the ASGI application being served.
    """

    def __init__(self, server: uvicorn.Server, sock: socket.socket, thread: threading.Thread, app: Any) -> None:
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


def _config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=5)


def start_server(app: Any, host: str = "127.0.0.1", port: int = 0, *, ready_timeout: float = 30.0) -> ServerHandle:
    """Serve ``app`` with uvicorn in a daemon thread; returns once it accepts connections."""
    sock = bind(host, port)
    server = uvicorn.Server(_config(app))
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


def run_server(app: Any, host: str, port: int, on_ready: Any = None) -> None:
    """Serve ``app`` in this thread until Ctrl-C / SIGTERM (uvicorn's signal handling)."""
    sock = bind(host, port)
    server = uvicorn.Server(_config(app))
    if on_ready is not None:
        on_ready(sock.getsockname()[:2])
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
