"""MongoSink against SecantusDB (MongoDB wire protocol)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from observer.reports.model import ReportType
from observer.sinks import build_sink
from observer.sinks.mongo import REPORT_TYPE_COLLECTIONS, MongoSink
from tests.observer.sinks.conftest import Servers
from tests.observer.sinks.reports import all_types, counts, make_report, many
from tests.observer.sinks.servers import ServerProcess, wait_until

pytestmark = pytest.mark.servers


@pytest.fixture
async def mongo(servers: Servers, unique: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongo_uri, serverSelectionTimeoutMS=5000)
    yield client
    await client.drop_database(unique)
    await client.close()


def mongo_config(uri: str, database: str, **extra: Any) -> dict[str, Any]:
    return {"uri": uri, "database": database, "maxBatchDelayMs": 10, **extra}


async def documents(client: AsyncMongoClient[dict[str, Any]], database: str, collection: str) -> list[dict[str, Any]]:
    return await client[database][collection].find({}, {"_id": 0}).to_list()


async def test_one_collection_holds_all_types(servers: Servers, unique: str, mongo: Any,
                                              registry: CollectorRegistry) -> None:
    sink = build_sink("mongo", "MongoSink", mongo_config(servers.mongo_uri, unique), registry)
    await sink.start()
    reports = all_types()
    sink.submit(reports)
    await wait_until(lambda: counts(registry, "mongo")["sent"] == 18)
    await sink.stop(2)
    assert await mongo[unique].list_collection_names() == ["reports"]
    docs = await documents(mongo, unique, "reports")
    assert sorted(docs, key=lambda d: d["type"]) == sorted((r.to_envelope() for r in reports),
                                                           key=lambda d: d["type"])


async def test_report_type_based_maps_all_18_types(servers: Servers, unique: str, mongo: Any,
                                                   registry: CollectorRegistry) -> None:
    sink = build_sink("mongo", "MongoSink", mongo_config(servers.mongo_uri, unique, savingStrategy="REPORT_TYPE_BASED",
                                                        printSummary=True), registry)
    await sink.start()
    sink.submit(all_types() + all_types(1))
    await wait_until(lambda: counts(registry, "mongo")["sent"] == 36)
    await sink.stop(2)
    assert sorted(await mongo[unique].list_collection_names()) == sorted(REPORT_TYPE_COLLECTIONS.values())
    assert len(set(REPORT_TYPE_COLLECTIONS.values())) == 18
    for report_type, collection in REPORT_TYPE_COLLECTIONS.items():
        docs = await documents(mongo, unique, collection)
        assert [d["type"] for d in docs] == [report_type.value] * 2
    ice = await documents(mongo, unique, "IceCandidatePairReports")
    assert ice[0]["payload"] == make_report(ReportType.ICE_CANDIDATE_PAIR).payload


async def test_service_id_based_and_collection_name_overrides(servers: Servers, unique: str, mongo: Any) -> None:
    sink = build_sink("mongo", "MongoSink", mongo_config(servers.mongo_uri, unique, savingStrategy="SERVICE_ID_BASED"))
    assert isinstance(sink, MongoSink)
    await sink.start()
    sink.submit([make_report(ReportType.CALL_EVENT, serviceId="alpha"),
                 make_report(ReportType.SFU_EVENT, serviceId="beta"),
                 make_report(ReportType.SFU_EVENT, serviceId="beta"),
                 make_report(ReportType.OBSERVER_EVENT, serviceId="$bad")])
    await sink.stop(2)
    names = await mongo[unique].list_collection_names()
    assert sorted(names) == ["_bad", "alpha", "beta"]
    assert len(await documents(mongo, unique, "beta")) == 2
    typed = build_sink("m2", "MongoSink", mongo_config(servers.mongo_uri, unique, savingStrategy="REPORT_TYPE_BASED",
                                                       collectionNames={"call-event": "calls"}))
    assert isinstance(typed, MongoSink)
    assert typed.collection_of(make_report(ReportType.CALL_EVENT)) == "calls"
    assert typed.collection_of(make_report(ReportType.SFU_EVENT)) == "SfuEventReports"


async def test_connection_block_builds_the_uri(servers: Servers, unique: str, mongo: Any,
                                               registry: CollectorRegistry) -> None:
    config = {"connection": {"servers": [f"127.0.0.1:{servers.mongo_port}"],
                             "options": {"serverSelectionTimeoutMS": 3000, "directConnection": True}},
              "database": unique, "maxBatchDelayMs": 10}
    sink = build_sink("mongo", "MongoSink", config, registry)
    await sink.start()
    sink.submit(many(3))
    await sink.stop(2)
    assert counts(registry, "mongo")["sent"] == 3
    assert len(await documents(mongo, unique, "reports")) == 3
    with_user = build_sink("m", "MongoSink", {"connection": {"servers": ["h1:1", "h2"], "username": "u@x",
                                                              "password": "p:w/"}, "database": "d"})
    assert with_user._uri == "mongodb://u%40x:p%3Aw%2F@h1:1,h2/"  # type: ignore[attr-defined]


async def test_a_retry_does_not_insert_twice(servers: Servers, unique: str, mongo: Any) -> None:
    sink = build_sink("mongo", "MongoSink", mongo_config(servers.mongo_uri, unique))
    assert isinstance(sink, MongoSink)
    await sink._open()
    reports = many(5)
    # the first attempt inserts 3 of 5 documents and its reply is lost: the retry sends all 5 again
    first_docs = [sink._document(r) for r in reports]
    await mongo[unique]["reports"].insert_many(first_docs[:3])
    sink._pending = {id(r): (r, d) for r, d in zip(reports, first_docs, strict=True)}
    assert await sink._send(reports) is None
    await sink._close()
    assert len(await documents(mongo, unique, "reports")) == 5


@pytest.fixture
async def private_mongo() -> AsyncIterator[ServerProcess]:
    server = ServerProcess("mongo")
    yield server
    await server.close()


async def test_starts_with_server_down_and_recovers_after_a_restart(private_mongo: ServerProcess,
                                                                   registry: CollectorRegistry) -> None:
    uri = f"{private_mongo.url}/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000"
    sink = build_sink("mongo", "MongoSink", mongo_config(uri, "observer", maxRetries=30, maxRetryBackoffMs=300),
                      registry)
    await sink.start()  # nothing listens yet: must not raise
    sink.submit(many(10))
    await asyncio.sleep(0.5)
    await private_mongo.start()
    await wait_until(lambda: counts(registry, "mongo")["sent"] == 10, timeout=15)

    await private_mongo.stop()
    sink.submit(many(10))
    await asyncio.sleep(1.5)  # the insert fails (server selection timeout) and is retried
    await private_mongo.start()  # an in-memory server: the earlier documents are gone
    after = many(10)
    sink.submit(after)

    def settled() -> bool:
        c = counts(registry, "mongo")
        return c["sent"] + c["failed"] + c["dropped"] == 30

    await wait_until(settled, timeout=20)
    await sink.stop(2)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(private_mongo.url, serverSelectionTimeoutMS=3000)
    docs = await client["observer"]["reports"].find({}, {"payload.clientId": 1}).to_list()
    await client.close()
    assert {r.payload["clientId"] for r in after} <= {d["payload"]["clientId"] for d in docs}
    c = counts(registry, "mongo")
    assert c["sent"] == 30
    assert c["retried"] > 0
