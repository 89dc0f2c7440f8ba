"""Run by a test as a script: a TLS-terminating gateway in front of a plaintext runtime, and our
client calling through it, in one process.

The gateway accepts TLS (ALPN ``h2``, the certificate given) on 127.0.0.1 and forwards the bytes
to the runtime, as a cluster's gateway does for an HTTPRoute. The client trusts the certificate
through ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``, which gRPC reads once per process: hence a process
of its own. Prints one JSON line: what each call returned, or the error kind it raised.

Usage: ``python tls_gateway.py CERT KEY RUNTIME_PORT``
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

from chalk.shim.client import RemoteCallClient


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _gateway(
    cert: str, key: str, upstream: int, connections: set[asyncio.Task[Any]]
) -> asyncio.Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return await asyncio.start_server(forward, "127.0.0.1", 0, ssl=context)


async def _call(client: RemoteCallClient, target: str, tls: bool) -> Any:
    try:
        result = await client.call(target, {"x": [1, 2]}, name="g", tls=tls, deadline_s=10)
    except Exception as error:
        return type(error).__name__
    return result.to_pylist()


async def main(cert: str, key: str, upstream: int) -> None:
    connections: set[asyncio.Task[Any]] = set()
    server = await _gateway(cert, key, upstream, connections)
    port = server.sockets[0].getsockname()[1]
    async with server:
        async with RemoteCallClient() as client:
            target = f"localhost:{port}"
            report = {
                "tls": await _call(client, target, tls=True),
                "plaintext": await _call(client, target, tls=False),
            }
        # The client's channels are closed: let each forwarded connection finish.
        await asyncio.wait_for(asyncio.gather(*connections), timeout=10)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
