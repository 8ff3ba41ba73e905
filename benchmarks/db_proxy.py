"""A TCP proxy for benchmarks that delays every chunk from the upstream (a database) to the
client by a delay that can be changed while it runs; it runs in a child process so that the
benchmark's own load never delays it further."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from types import TracebackType

CHUNK = 65536


async def pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: Callable[[], float]
) -> None:
    """Copy `reader` to `writer`; each chunk leaves `delay_s()` after it arrived, in order,
    so the delay adds latency, not a limit on throughput."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                break
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(forward())
    try:
        while data := await reader.read(CHUNK):
            queue.put_nowait((loop.time() + delay_s(), data))
    finally:
        queue.put_nowait((loop.time() + delay_s(), b""))
        try:
            await sender
        finally:
            writer.close()


async def serve(upstream_port: int, delay_ms: Synchronized[float], ready: Connection) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            pipe(reader, up_writer, lambda: 0.0),
            pipe(up_reader, writer, lambda: delay_ms.value / 1000),
            return_exceptions=True,  # a reset connection ends both directions
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    ready.send(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def run(upstream_port: int, delay_ms: Synchronized[float], ready: Connection) -> None:
    asyncio.run(serve(upstream_port, delay_ms, ready))


class DelayProxy:
    """`with DelayProxy(5432) as proxy:` listens on 127.0.0.1:`proxy.port`; set
    `proxy.delay_ms` to slow what the upstream sends from then on."""

    def __init__(self, upstream_port: int) -> None:
        self._delay: Synchronized[float] = multiprocessing.Value("d", 0.0)
        receive, send = multiprocessing.Pipe(duplex=False)
        self._process = multiprocessing.Process(
            target=run, args=(upstream_port, self._delay, send), daemon=True
        )
        self._process.start()
        if not receive.poll(30):
            self._process.kill()
            raise RuntimeError("the delay proxy did not start")
        self.port: int = receive.recv()

    @property
    def delay_ms(self) -> float:
        return float(self._delay.value)

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        self._delay.value = value

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._process.terminate()
        self._process.join(10)
