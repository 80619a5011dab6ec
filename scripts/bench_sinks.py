#!/usr/bin/env python3
"""Reports per second each sink sustains against its local test server.

    python scripts/bench_sinks.py [--only kafka,mongo,...] [--scale 0.5]

Uses the servers of scripts/services.sh when their ports answer (OBSERVER_TEST_*_PORT, defaults 19092,
27017, 5055); otherwise starts a private set on free ports and stops it at the end. Each run keeps the
sink's queue half full with a mix of all 18 report types (so the sink, not the producer, is the limit)
and times until the sink's sent counter reaches the total. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiobotocore.session import AioSession  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from pymongo import AsyncMongoClient  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

from observer.reports.model import Report, ReportType  # noqa: E402
from observer.sinks import Sink, build_sink  # noqa: E402
from tests.observer.sinks.reports import make_report  # noqa: E402
from tests.observer.sinks.servers import free_port, port_open  # noqa: E402

REGION = "us-east-1"
QUEUE = 20_000


@contextlib.contextmanager
def servers() -> Iterator[dict[str, int]]:
    ports = {"kafka": int(os.environ.get("OBSERVER_TEST_KAFKA_PORT", 19092)),
             "mongo": int(os.environ.get("OBSERVER_TEST_MONGO_PORT", 27017)),
             "moto": int(os.environ.get("OBSERVER_TEST_MOTO_PORT", 5055))}
    if all(port_open(p) for p in ports.values()):
        yield ports
        return
    ports = {k: free_port() for k in ports}
    services_dir = tempfile.mkdtemp(prefix="observer-bench-services-")
    env = {**os.environ, "SERVICES_DIR": services_dir, "PYTHON": sys.executable,
           "OBSERVER_TEST_KAFKA_PORT": str(ports["kafka"]), "OBSERVER_TEST_MONGO_PORT": str(ports["mongo"]),
           "OBSERVER_TEST_MOTO_PORT": str(ports["moto"])}
    script = str(ROOT / "scripts" / "services.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True, timeout=90)
    try:
        yield ports
    finally:
        subprocess.run(["bash", script, "stop"], env=env, check=False, timeout=30)
        shutil.rmtree(services_dir, ignore_errors=True)


def report_mix(count: int) -> list[Report]:
    templates = [make_report(t, i) for i, t in enumerate(ReportType)]
    return [templates[i % len(templates)] for i in range(count)]


async def drive(sink: Sink, registry: CollectorRegistry, total: int, timeout: float = 120.0) -> float:
    """Seconds until ``total`` reports are sent, keeping the queue between 1/4 and 1/2 full."""
    reports = report_mix(2000)
    chunk = 500
    submitted = 0
    await sink.start()
    started = time.perf_counter()
    sent = 0.0
    while sent < total:
        while submitted < total and sink.queue_depth < QUEUE // 2:
            n = min(chunk, total - submitted)
            start = submitted % len(reports)  # chunk divides len(reports): never runs past the end
            sink.submit(reports[start:start + n])
            submitted += n
        await asyncio.sleep(0.002)
        sent = registry.get_sample_value("observertc_sink_reports_sent_total", {"sink": sink.name}) or 0.0
        lost = registry.get_sample_value("observertc_sink_reports_failed_total", {"sink": sink.name})
        if lost:
            raise RuntimeError(f"{sink.name}: {lost} reports failed")
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{sink.name}: only {sent}/{total} sent in {timeout}s")
    elapsed = time.perf_counter() - started
    await sink.stop(5)
    return elapsed


@contextlib.asynccontextmanager
async def ws_server() -> AsyncIterator[int]:
    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async with serve(handler, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def tcp_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def aws_setup(moto: str, bucket: str, stream: str | None = None) -> None:
    session = AioSession()
    kwargs: dict[str, Any] = {"region_name": REGION, "endpoint_url": moto, "aws_access_key_id": "bench",
                              "aws_secret_access_key": "bench"}
    async with session.create_client("s3", **kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
    if stream is not None:
        async with session.create_client("firehose", **kwargs) as firehose:
            await firehose.create_delivery_stream(
                DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
                ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/bench",
                                                    "BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": "fh/"})


async def cleanup(sink_type: str, config: dict[str, Any], moto: str, unique: str) -> None:
    """Remove what a run left on a (possibly shared) server."""
    if sink_type == "MongoSink":
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(config["uri"])
        await client.drop_database(unique)
        await client.close()
    if sink_type not in ("FirehoseSink", "AwsS3Sink"):
        return
    session = AioSession()
    kwargs: dict[str, Any] = {"region_name": REGION, "endpoint_url": moto, "aws_access_key_id": "bench",
                              "aws_secret_access_key": "bench"}
    if sink_type == "FirehoseSink":
        async with session.create_client("firehose", **kwargs) as firehose:
            await firehose.delete_delivery_stream(DeliveryStreamName=unique)
    async with session.create_client("s3", **kwargs) as s3:
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=unique):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                await s3.delete_objects(Bucket=unique, Delete={"Objects": keys})
        await s3.delete_bucket(Bucket=unique)


async def run(only: set[str] | None, scale: float) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    logging.getLogger("observer.sinks").setLevel(logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    tmp = Path(tempfile.mkdtemp(prefix="observer-bench-"))
    common = {"queueSize": QUEUE}
    rows: list[tuple[str, int, int, float]] = []
    with servers() as ports:
        moto = f"http://127.0.0.1:{ports['moto']}"
        cases: list[tuple[str, str, dict[str, Any], int]] = [
            ("logger", "LoggerSink", {"logLevel": "DEBUG"}, 200_000),
            ("file", "FileSink", {"path": str(tmp / "reports.jsonl")}, 200_000),
            ("socket", "SocketSink", {"host": "127.0.0.1", "port": 0}, 200_000),
            ("websocket", "WebsocketSink", {"uri": "ws://127.0.0.1:0"}, 100_000),
            ("kafka", "KafkaSink", {"properties": {"bootstrap.servers": f"127.0.0.1:{ports['kafka']}",
                                                   "linger.ms": 5, "batch.size": 262144}}, 100_000),
            ("mongo", "MongoSink", {"uri": f"mongodb://127.0.0.1:{ports['mongo']}"}, 30_000),
            ("mongo-per-type", "MongoSink", {"uri": f"mongodb://127.0.0.1:{ports['mongo']}",
                                             "savingStrategy": "REPORT_TYPE_BASED"}, 30_000),
            ("firehose-json", "FirehoseSink", {"regionId": REGION, "endpointOverride": moto,
                                               "encodingType": "JSON"}, 30_000),
            ("firehose-csv", "FirehoseSink", {"regionId": REGION, "endpointOverride": moto,
                                              "encodingType": "CSV"}, 30_000),
            ("s3-json", "AwsS3Sink", {"regionId": REGION, "endpointOverride": moto, "encodingType": "JSON",
                                      "defaultPrefix": "bench"}, 30_000),
            ("s3-csv", "AwsS3Sink", {"regionId": REGION, "endpointOverride": moto, "encodingType": "CSV",
                                     "defaultPrefix": "bench"}, 30_000),
        ]
        for label, sink_type, config, total in cases:
            if only and label not in only and label.split("-")[0] not in only:
                continue
            total = max(1000, int(total * scale))
            name = f"bench-{label}"
            unique = f"bench{uuid.uuid4().hex[:10]}"
            async with contextlib.AsyncExitStack() as stack:
                config = {**common, **config}
                if sink_type == "SocketSink":
                    config["port"] = await stack.enter_async_context(tcp_server())
                if sink_type == "WebsocketSink":
                    config["uri"] = f"ws://127.0.0.1:{await stack.enter_async_context(ws_server())}"
                if sink_type == "KafkaSink":
                    config["topic"] = unique
                if sink_type == "MongoSink":
                    config["database"] = unique
                if sink_type == "FirehoseSink":
                    await aws_setup(moto, unique, unique)
                    config["defaultDeliveryStreamId"] = unique
                if sink_type == "AwsS3Sink":
                    await aws_setup(moto, unique)
                    config["bucketName"] = unique
                registry = CollectorRegistry()
                sink = build_sink(name, sink_type, config, registry)
                if sink_type == "LoggerSink":
                    sink.log.propagate = False
                    sink.log.addHandler(logging.NullHandler())
                    sink.log.setLevel(logging.DEBUG)
                elapsed = await drive(sink, registry, total)
                rows.append((label, sink.batch.max_batch_size, total, elapsed))
                print(f"  {label:<15} {total:>8} reports in {elapsed:6.2f}s", file=sys.stderr, flush=True)
                await cleanup(sink_type, config, moto, unique)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'sink':<16}{'batch size':>11}{'reports':>10}{'seconds':>9}{'reports/s':>12}")
    for label, batch_size, total, elapsed in rows:
        print(f"{label:<16}{batch_size:>11}{total:>10}{elapsed:>9.2f}{total / elapsed:>12,.0f}")


async def pipeline_with_all_sinks(samples: int) -> None:
    """The pipeline's samples/s with every sink enabled at once vs a counting sink alone, same run."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_observer

    tpl = bench_observer.Templates()
    tmp = Path(tempfile.mkdtemp(prefix="observer-bench-all-"))
    unique = f"benchall{uuid.uuid4().hex[:8]}"
    with servers() as ports:
        moto = f"http://127.0.0.1:{ports['moto']}"
        await aws_setup(moto, unique, unique)
        async with ws_server() as ws_port:
            sinks = {
                "file": {"type": "FileSink", "config": {"path": str(tmp / "reports.jsonl")}},
                "websocket": {"type": "WebsocketSink", "config": {"uri": f"ws://127.0.0.1:{ws_port}"}},
                "kafka": {"type": "KafkaSink", "config": {"topic": unique, "properties": {
                    "bootstrap.servers": f"127.0.0.1:{ports['kafka']}", "linger.ms": 5}}},
                "mongo": {"type": "MongoSink", "config": {"uri": f"mongodb://127.0.0.1:{ports['mongo']}",
                                                         "database": unique}},
                "firehose": {"type": "FirehoseSink", "config": {"regionId": REGION, "endpointOverride": moto,
                                                               "defaultDeliveryStreamId": unique,
                                                               "encodingType": "CSV"}},
                "s3": {"type": "AwsS3Sink", "config": {"regionId": REGION, "endpointOverride": moto,
                                                      "bucketName": unique, "defaultPrefix": "all",
                                                      "encodingType": "JSON"}},
            }
            alone = await bench_observer.flood_rate(tpl, samples, 150)
            together = await bench_observer.flood_rate(tpl, samples, 150, sinks)
        for sink_type, config in (("MongoSink", {"uri": f"mongodb://127.0.0.1:{ports['mongo']}"}),
                                  ("FirehoseSink", {}), ("AwsS3Sink", {})):
            with contextlib.suppress(Exception):
                await cleanup(sink_type, config, moto, unique)
    print(f"\npipeline with every sink enabled at once vs a counting sink alone ({samples} client samples, "
          "websocket flood, same run)")
    print(f"{'sinks':34} {'samples/s':>10} {'reports/s':>10}")
    print(f"{'counting sink':34} {alone['samples/s']:10.0f} {alone['reports/s']:10.0f}")
    print(f"{'counting + file, ws, kafka, mongo, firehose, s3':34} {together['samples/s']:10.0f} "
          f"{together['reports/s']:10.0f}")
    print(f"ratio all sinks / counting sink: {together['samples/s'] / alone['samples/s']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated sink labels (logger,file,socket,websocket,kafka,mongo,"
                                       "firehose,s3 or a full label such as s3-csv)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the report counts")
    parser.add_argument("--pipeline-samples", type=int, default=6000,
                        help="client samples for the all-sinks vs counting-sink pipeline run (0: skip it)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    asyncio.run(run(only, args.scale))
    if args.pipeline_samples:
        asyncio.run(pipeline_with_all_sinks(args.pipeline_samples))


if __name__ == "__main__":
    main()
