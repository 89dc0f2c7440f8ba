"""The stable local URL of a group: a TCP forwarder on a fixed port to its ready replicas.

Replicas come and go on ports of their own; the group's URL stays. The controller runs one
``GroupProxy`` per live group and tells it the current backends after each pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from typing import Final

__all__ = ["GroupProxy"]

logger = logging.getLogger("chalk.deploy.local.proxy")
_CHUNK: Final = 1 << 16
_CLOSE_TIMEOUT_S: Final = 2.0


class GroupProxy:
    """Accepts connections on ``127.0.0.1:port`` and pipes each to one ready replica."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.port = 0
        self._backends: list[int] = []
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, preferred_port: int = 0) -> int:
        """Listen on ``preferred_port`` (kept across controller restarts) or a free one."""
        try:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", preferred_port)
        except OSError:
            if preferred_port == 0:
                raise
            logger.warning("port %d for %s is taken; using another", preferred_port, self.group)
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def set_backends(self, ports: Sequence[int]) -> None:
        """The replica ports new connections may go to (ready replicas only)."""
        self._backends = list(ports)

    async def close(self) -> None:
        """Stop listening and drop open connections (Python 3.12+ waits for them otherwise)."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self._server.wait_closed(), timeout=_CLOSE_TIMEOUT_S)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            upstream_reader, upstream_writer = upstream
            self._writers.add(upstream_writer)
            try:
                await asyncio.gather(
                    _pipe(reader, upstream_writer),
                    _pipe(upstream_reader, writer),
                    return_exceptions=True,
                )
            finally:
                self._writers.discard(upstream_writer)
                upstream_writer.close()
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        # Start at the next backend in turn; a replica that just went away makes us try the rest.
        backends = self._backends
        first = next(self._turn)
        for offset in range(len(backends)):
            port = backends[(first + offset) % len(backends)]
            with contextlib.suppress(OSError):
                return await asyncio.open_connection("127.0.0.1", port)
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; at its end, half-close the other side so replies still flow."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
