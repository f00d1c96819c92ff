"""`python -m tools.stack.forward LISTEN=TARGET ...` — a plain TCP byte forwarder.

Real-node pods sit on the CNI bridge and cannot reach the stack's servers, which bind
127.0.0.1. The stack runs this on the bridge gateway (e.g. 10.89.0.1:PORT → 127.0.0.1:<s3>).
It copies bytes and nothing else, so a presigned URL's signed Host header arrives unchanged.
Stdlib only; one asyncio loop for every mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be talking
    except (ConnectionError, OSError):
        writer.close()


async def _serve(listen: str, target: str) -> asyncio.Server:
    target_host, target_port = _split(target)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
        finally:
            for w in (client_w, server_w):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()

    host, port = _split(listen)
    return await asyncio.start_server(handle, host, port, reuse_address=True)


async def _main(mappings: list[tuple[str, str]]) -> None:
    servers = [await _serve(listen, target) for listen, target in mappings]
    for (listen, target) in mappings:
        print(f"forwarding {listen} -> {target}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    mappings = [(a.split("=", 1)[0], a.split("=", 1)[1]) for a in argv]
    asyncio.run(_main(mappings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
