"""WebsocketSink and SocketSink against local servers on ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest
from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve

from observer.sinks import build_sink
from tests.observer.sinks.reports import all_types, counts, many
from tests.observer.sinks.servers import free_port, wait_until


class FrameCollector:
    """A websocket server that keeps the text frames it gets; ``drop_after`` closes a connection after
    that many frames (the sink must reconnect and carry on)."""

    def __init__(self, drop_after: int | None = None) -> None:
        self.frames: list[str] = []
        self.connections = 0
        self.drop_after = drop_after

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        count = 0
        async for frame in ws:
            assert isinstance(frame, str)
            self.frames.append(frame)
            count += 1
            if self.drop_after is not None and count == self.drop_after and self.connections == 1:
                await ws.close(1011, "going away")
                return


@contextlib.asynccontextmanager
async def ws_server(collector: FrameCollector, port: int = 0) -> AsyncIterator[Server]:
    async with serve(collector.handler, "127.0.0.1", port) as server:
        yield server


async def test_websocket_sends_each_envelope_as_a_text_frame(registry: CollectorRegistry) -> None:
    collector = FrameCollector()
    async with ws_server(collector) as server:
        port = server.sockets[0].getsockname()[1]
        sink = build_sink("ws", "WebsocketSink", {"uri": f"ws://127.0.0.1:{port}/reports", "maxBatchDelayMs": 5},
                          registry)
        await sink.start()
        reports = all_types()
        sink.submit(reports)
        await wait_until(lambda: len(collector.frames) == 18)
        await sink.stop(1)
    assert [orjson.loads(f) for f in collector.frames] == [r.to_envelope() for r in reports]
    assert counts(registry, "ws")["sent"] == 18


async def test_websocket_reconnects_and_resends_the_rest(registry: CollectorRegistry) -> None:
    collector = FrameCollector(drop_after=5)
    async with ws_server(collector) as server:
        port = server.sockets[0].getsockname()[1]
        sink = build_sink("ws", "WebsocketSink", {"uri": f"ws://127.0.0.1:{port}", "maxRetry": 5,
                                                  "maxRetryBackoffMs": 50, "maxBatchDelayMs": 5}, registry)
        await sink.start()
        first = many(10)
        sink.submit(first)
        await wait_until(lambda: collector.connections == 1 and len(collector.frames) >= 5)
        await asyncio.sleep(0.1)
        second = many(10)
        sink.submit(second)
        await wait_until(lambda: counts(registry, "ws")["sent"] + counts(registry, "ws")["failed"] == 20)
        await wait_until(lambda: {orjson.loads(f)["payload"]["clientId"] for f in collector.frames}
                         >= {r.payload["clientId"] for r in second})
        await sink.stop(1)
    assert collector.connections == 2
    c = counts(registry, "ws")
    # frames written into a connection the server was closing are lost without an error: counted as sent
    assert c["sent"] + c["failed"] == 20


async def test_websocket_starts_with_server_down(registry: CollectorRegistry) -> None:
    port = free_port()
    sink = build_sink("ws", "WebsocketSink", {"uri": f"ws://127.0.0.1:{port}", "maxRetries": 20,
                                              "maxRetryBackoffMs": 100, "maxBatchDelayMs": 5}, registry)
    await sink.start()
    sink.submit(many(3))
    await asyncio.sleep(0.3)
    collector = FrameCollector()
    async with ws_server(collector, port):
        await wait_until(lambda: len(collector.frames) == 3)
        await sink.stop(1)
    assert counts(registry, "ws")["retried"] > 0


@pytest.fixture
async def line_server() -> AsyncIterator[tuple[int, list[bytes], list[asyncio.StreamWriter]]]:
    lines: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while line := await reader.readline():
            lines.append(line)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], lines, writers
    server.close()
    for writer in writers:
        writer.close()
    await server.wait_closed()


async def test_socket_sink_writes_json_lines_and_reconnects(
        line_server: tuple[int, list[bytes], list[asyncio.StreamWriter]], registry: CollectorRegistry) -> None:
    port, lines, writers = line_server
    sink = build_sink("tcp", "SocketSink", {"host": "127.0.0.1", "port": port, "maxBatchDelayMs": 5,
                                            "maxRetryBackoffMs": 50}, registry)
    await sink.start()
    reports = all_types()
    sink.submit(reports)
    await wait_until(lambda: len(lines) == 18)
    assert [orjson.loads(line) for line in lines] == [r.to_envelope() for r in reports]
    writers[0].transport.abort()  # the server drops the connection
    await asyncio.sleep(0.1)
    for _ in range(5):  # the first write after the drop may still be taken by the kernel
        sink.submit(many(2))
        await asyncio.sleep(0.05)
    await wait_until(lambda: len(writers) == 2 and len(lines) > 18)
    await sink.stop(1)
    c = counts(registry, "tcp")
    assert c["sent"] + c["failed"] == 28
