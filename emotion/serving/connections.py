"""The server's HTTP connections, guarded against slow and hostile clients: uvicorn's h11
protocol with a deadline for a request's line and headers (a connection that opens and sends
nothing, or half its headers, is closed when it passes) and a cap on open connections (one
over it is closed at once); uvicorn's own keep-alive timeout closes idle connections between
requests, and the app a body that does not arrive in time (app.read_body). Draining: once
uvicorn's graceful shutdown begins (SIGTERM, SIGINT), readiness answers 503 until the process
exits."""

from __future__ import annotations

import asyncio
import threading

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

# Set when uvicorn's graceful shutdown begins: the app's readiness answers 503.
draining = threading.Event()


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with the request-head deadline and the connection cap of the config
    (GuardedConfig)."""

    _head_deadline: asyncio.TimerHandle | None = None

    def __init__(self, config: GuardedConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout, self.max_connections = config.header_timeout, config.max_connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()  # over the cap: closed before it costs anything
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # a new request begins: its head has a deadline too
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # the request's head is complete
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown has begun (SIGTERM or SIGINT): readiness is 503."""
        draining.set()
        super().shutdown()

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class GuardedConfig(uvicorn.Config):
    """uvicorn's config with the guards' settings (pickled with it to --workers' processes)."""

    def __init__(self, app, *, header_timeout: float, max_connections: int, **options) -> None:
        super().__init__(app, http=GuardedH11Protocol, **options)
        self.header_timeout, self.max_connections = header_timeout, max_connections


def serve(app, **options) -> None:
    """Run `app` (an app, or for workers > 1 the import string of a factory) with uvicorn and
    the guards above (options: GuardedConfig's)."""
    from uvicorn.supervisors import Multiprocess

    config = GuardedConfig(app, **options)
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
