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


class GroupProxy:
    """Accepts connections on ``127.0.0.1:port`` and pipes each to one ready replica."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.port = 0
        self._backends: list[int] = []
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None

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
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backends = self._backends
        if not backends:
            writer.close()
            return
        port = backends[next(self._turn) % len(backends)]
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()
