"""FirehoseSink and AwsS3Sink against moto server, plus AWS endpoints and credentials."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiobotocore.session import AioSession
from prometheus_client import CollectorRegistry

from observer.reports.csv import csv_columns
from observer.reports.model import Report, ReportType
from observer.sinks import build_sink
from observer.sinks.aws import AwsClient, read_credentials
from observer.sinks.firehose import MAX_BYTES_PER_CALL, MAX_RECORD_BYTES, FirehoseSink, _calls, _Record
from observer.sinks.s3 import AwsS3Sink
from observer.sinks.settings import ConfigReader
from tests.observer.sinks.reports import CALL_ID, SERVICE_ID, SFU_ID, all_types, counts, make_report, many
from tests.observer.sinks.servers import ServerProcess, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.usefixtures("aws_env")]
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/observer"


class Moto:
    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, service: str) -> Any:
        return AioSession().create_client(service, region_name=REGION, endpoint_url=self.url,
                                          aws_access_key_id="testing", aws_secret_access_key="testing")

    async def bucket(self, name: str) -> None:
        async with self.client("s3") as s3:
            await s3.create_bucket(Bucket=name)

    async def stream(self, name: str, bucket: str) -> None:
        async with self.client("firehose") as firehose:
            await firehose.create_delivery_stream(
                DeliveryStreamName=name, DeliveryStreamType="DirectPut",
                ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
                                                    "Prefix": f"{name}/"})

    async def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        result: dict[str, bytes] = {}
        async with self.client("s3") as s3:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            async for page in pages:
                for item in page.get("Contents", []):
                    body = await s3.get_object(Bucket=bucket, Key=item["Key"])
                    async with body["Body"] as stream:
                        result[item["Key"]] = await stream.read()
        return result


@pytest.fixture
def aws(moto: str) -> Moto:
    return Moto(moto)


def parse_csv(text: str, report_type: ReportType, delimiter: str = ",") -> list[dict[str, str]]:
    columns = csv_columns(report_type)
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    assert all(len(row) == len(columns) for row in rows)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def assert_csv_row_matches(row: dict[str, str], report: Report) -> None:
    assert row == {c: csv_text(report.payload.get(c)) for c in row}


# ---- Firehose ------------------------------------------------------------------------------------------


async def test_firehose_json_routes_per_type_and_writes_newline_delimited_payloads(
        aws: Moto, unique: str, registry: CollectorRegistry) -> None:
    await aws.bucket(unique)
    await aws.stream(f"{unique}-calls", unique)
    await aws.stream(f"{unique}-default", unique)
    config = {"regionId": REGION, "endpointOverride": aws.url, "encodingType": "JSON",
              "defaultDeliveryStreamId": f"{unique}-default",
              "streams": {"call-event": f"{unique}-calls", "callMetaData": f"{unique}-calls"}, "maxBatchDelayMs": 10}
    sink = build_sink("fh", "FirehoseSink", config, registry)
    await sink.start()
    reports = all_types()
    sink.submit(reports)
    await wait_until(lambda: counts(registry, "fh")["sent"] == 18)
    await sink.stop(2)
    calls = b"".join((await aws.objects(unique, f"{unique}-calls/")).values())
    rest = b"".join((await aws.objects(unique, f"{unique}-default/")).values())
    assert calls.endswith(b"\n") and rest.endswith(b"\n")
    call_payloads = [orjson.loads(line) for line in calls.splitlines()]
    assert sorted(orjson.dumps(p) for p in call_payloads) == sorted(
        orjson.dumps(r.payload) for r in reports if r.type in (ReportType.CALL_EVENT, ReportType.CALL_META_DATA))
    assert len(rest.splitlines()) == 16


async def test_firehose_csv_chunks_rows_that_parse_back(aws: Moto, unique: str, registry: CollectorRegistry) -> None:
    await aws.bucket(unique)
    await aws.stream(unique, unique)
    # the format must hold for every chunk (the reference fell back to DEFAULT after the first one)
    config = {"regionId": REGION, "endpointOverride": aws.url, "defaultDeliveryStreamId": unique,
              "csvChunkSize": 4, "csvFormat": "TDF", "maxBatchDelayMs": 10, "streams": {}}
    sink = build_sink("fh", "FirehoseSink", config, registry)
    reports = many(10, ReportType.INBOUND_VIDEO_TRACK) + many(3, ReportType.SFU_SCTP_STREAM)
    await sink.start()
    sink.submit(reports)
    await wait_until(lambda: counts(registry, "fh")["sent"] == 13)
    await sink.stop(2)
    body = b"".join((await aws.objects(unique)).values()).decode()
    lines = body.splitlines(keepends=True)
    assert len(lines) == 13 and all(line.endswith("\r\n") for line in lines)
    video = parse_csv("".join(lines[:10]), ReportType.INBOUND_VIDEO_TRACK, "\t")
    for row, report in zip(video, reports[:10], strict=True):
        assert_csv_row_matches(row, report)
    sctp = parse_csv("".join(lines[10:]), ReportType.SFU_SCTP_STREAM, "\t")
    assert [r["sfuId"] for r in sctp] == [SFU_ID] * 3


async def test_firehose_unrouted_types_are_dropped_and_counted(aws: Moto, unique: str,
                                                               registry: CollectorRegistry) -> None:
    await aws.bucket(unique)
    await aws.stream(unique, unique)
    config = {"regionId": REGION, "endpointOverride": aws.url, "streams": {"SFU_EVENT": unique},
              "encodingType": "JSON", "maxBatchDelayMs": 10}
    sink = build_sink("fh", "FirehoseSink", config, registry)
    await sink.start()
    sink.submit(all_types())
    await wait_until(lambda: counts(registry, "fh")["sent"] == 1)
    await sink.stop(2)
    assert registry.get_sample_value("observertc_sink_reports_dropped_total",
                                     {"sink": "fh", "reason": "unrouted"}) == 17


def test_firehose_calls_respect_the_record_and_size_limits() -> None:
    small = [_Record(b"x" * 10, ()) for _ in range(1200)]
    assert [len(c) for c in _calls(small)] == [500, 500, 200]
    big = [_Record(b"x" * MAX_RECORD_BYTES, ()) for _ in range(9)]
    calls = list(_calls(big))
    assert all(sum(len(r.data) for r in c) <= MAX_BYTES_PER_CALL for c in calls)
    assert [len(c) for c in calls] == [4, 4, 1]


def test_firehose_splits_csv_records_over_the_record_limit_and_drops_single_oversized_reports() -> None:
    sink = build_sink("fh", "FirehoseSink", {"regionId": REGION, "defaultDeliveryStreamId": "s",
                                             "csvChunkSize": 100})
    assert isinstance(sink, FirehoseSink)
    fat = [make_report(ReportType.CALL_EVENT, i, message="m" * 300_000) for i in range(7)]
    huge = make_report(ReportType.CALL_EVENT, message="m" * (MAX_RECORD_BYTES + 1))
    records, too_large = sink._records([*fat, huge])
    assert too_large == 1
    assert all(len(r.data) <= MAX_RECORD_BYTES for r in records)
    assert sum(len(r.reports) for r in records) == 7


class FlakyFirehose:
    """put_record_batch that fails the records at the given indexes of its first call."""

    def __init__(self, fail: set[int]) -> None:
        self.fail = fail
        self.calls: list[list[bytes]] = []

    async def put_record_batch(self, DeliveryStreamName: str, Records: Sequence[dict[str, bytes]]) -> Any:
        self.calls.append([r["Data"] for r in Records])
        fail = self.fail if len(self.calls) == 1 else set()
        return {"FailedPutCount": len(fail),
                "RequestResponses": [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
                                     if i in fail else {"RecordId": str(i)} for i in range(len(Records))]}


async def test_firehose_retries_only_the_failed_records(registry: CollectorRegistry) -> None:
    sink = build_sink("fh", "FirehoseSink", {"regionId": REGION, "defaultDeliveryStreamId": "s",
                                             "encodingType": "JSON", "maxBatchDelayMs": 10,
                                             "maxRetryBackoffMs": 10}, registry)
    assert isinstance(sink, FirehoseSink)
    flaky = FlakyFirehose({1, 3})
    sink._aws = AwsClient("firehose", REGION, None, None)

    async def fake_open() -> None:
        sink._aws.client = flaky

    sink._aws.open = fake_open  # type: ignore[method-assign]
    reports = many(5)
    await sink.start()
    sink.submit(reports)
    await wait_until(lambda: counts(registry, "fh")["sent"] == 5)
    await sink.stop(1)
    assert [len(c) for c in flaky.calls] == [5, 2]
    assert [orjson.loads(d)["clientId"] for d in flaky.calls[1]] == [reports[1].payload["clientId"],
                                                                     reports[3].payload["clientId"]]
    assert counts(registry, "fh")["retried"] == 2


async def test_firehose_missing_stream_is_a_counted_failure_not_a_crash(aws: Moto, unique: str,
                                                                        registry: CollectorRegistry) -> None:
    sink = build_sink("fh", "FirehoseSink", {"regionId": REGION, "endpointOverride": aws.url,
                                             "defaultDeliveryStreamId": f"{unique}-nope", "maxBatchDelayMs": 10},
                      registry)
    await sink.start()
    sink.submit(many(3))
    await wait_until(lambda: counts(registry, "fh")["failed"] == 3)
    await sink.stop(1)
    assert counts(registry, "fh")["retried"] == 0


# ---- S3 ------------------------------------------------------------------------------------------------


async def test_s3_structured_keys_and_json_lines(aws: Moto, unique: str, registry: CollectorRegistry) -> None:
    await aws.bucket(unique)
    config = {"bucketName": unique, "regionId": REGION, "endpointOverride": aws.url, "encodingType": "JSON",
              "defaultPrefix": "reports", "prefixes": {"sfu-event": "events/sfu/"}, "structured": True,
              "maxBatchDelayMs": 10}
    sink = build_sink("s3", "AwsS3Sink", config, registry)
    await sink.start()
    reports = [*all_types(), make_report(ReportType.CALL_EVENT, 1, callId=None, serviceId=None)]
    sink.submit(reports)
    await wait_until(lambda: counts(registry, "s3")["sent"] == 19)
    await sink.stop(2)
    objects = await aws.objects(unique)
    assert len(objects) == 19  # 18 types + the call event without ids lands under other prefixes
    prefixes = {key.rsplit("/", 1)[0] for key in objects}
    assert f"{SERVICE_ID}/call-reports/{CALL_ID}/reports" in prefixes
    assert f"{SERVICE_ID}/sfu-reports/{SFU_ID}/reports" in prefixes
    assert f"{SERVICE_ID}/sfu-reports/{SFU_ID}/events/sfu" in prefixes
    assert "unknown-services/call-reports/unknown-calls/reports" in prefixes
    ice = [v for k, v in objects.items() if "-ice-candidate-pair-" in k and k.endswith(".json")]
    assert [orjson.loads(line) for line in ice[0].splitlines()] == [make_report(ReportType.ICE_CANDIDATE_PAIR).payload]


async def test_s3_csv_objects_parse_back_and_keys_never_collide(aws: Moto, unique: str,
                                                                registry: CollectorRegistry) -> None:
    await aws.bucket(unique)
    config = {"bucketName": unique, "regionId": REGION, "endpointOverride": aws.url, "defaultPrefix": "csv",
              "addServiceIdPrefix": True, "maxBatchDelayMs": 0, "maxBatchSize": 50}
    sink = build_sink("s3", "AwsS3Sink", config, registry)
    await sink.start()
    reports = many(600, ReportType.OUTBOUND_AUDIO_TRACK)
    for start in range(0, 600, 50):  # twelve batches within a second or two: same timestamp in the keys
        sink.submit(reports[start:start + 50])
    await wait_until(lambda: counts(registry, "s3")["sent"] == 600, timeout=20)
    await sink.stop(2)
    objects = await aws.objects(unique, f"{SERVICE_ID}/csv/")
    assert len(objects) == 12
    rows = [row for key in sorted(objects, key=lambda k: int(k.rsplit("-", 1)[1].split(".")[0]))
            for row in parse_csv(objects[key].decode(), ReportType.OUTBOUND_AUDIO_TRACK)]
    for row, report in zip(rows, reports, strict=True):
        assert_csv_row_matches(row, report)


async def test_s3_csv_holds_every_report_type_in_its_own_objects(aws: Moto, unique: str,
                                                                 registry: CollectorRegistry) -> None:
    await aws.bucket(unique)
    config = {"bucketName": unique, "regionId": REGION, "endpointOverride": aws.url, "defaultPrefix": "all",
              "csvFormat": "RFC4180", "maxBatchDelayMs": 10}
    sink = build_sink("s3", "AwsS3Sink", config, registry)
    await sink.start()
    reports = all_types() + all_types(1)
    sink.submit(reports)
    await wait_until(lambda: counts(registry, "s3")["sent"] == 36)
    await sink.stop(2)
    objects = await aws.objects(unique, "all/")
    assert len(objects) == 18
    for key, body in objects.items():
        # <stamp>-<report-type>-<token>-<sequence>.csv
        report_type = ReportType(key.split("/")[1].split("-", 1)[1].rsplit("-", 2)[0].replace("-", "_").upper())
        expected = [r for r in reports if r.type is report_type]
        rows = parse_csv(body.decode(), report_type)
        for row, report in zip(rows, expected, strict=True):
            assert_csv_row_matches(row, report)


def test_s3_prefix_flags_one_by_one() -> None:
    base = {"bucketName": "b", "regionId": REGION, "defaultPrefix": "p"}
    report = make_report(ReportType.SFU_INBOUND_RTP_PAD)
    expected = {"addServiceIdPrefix": f"{SERVICE_ID}/p", "addReportCategoryPrefix": "sfu-reports/p",
                "addSfuOrCallIdPrefix": f"{SFU_ID}/p"}
    for flag, prefix in expected.items():
        sink = build_sink("s3", "AwsS3Sink", {**base, flag: True})
        assert isinstance(sink, AwsS3Sink)
        assert sink.object_prefix(report) == prefix
    structured_but_no_ids = build_sink("s3", "AwsS3Sink", {**base, "structured": True,
                                                           "add-sfu-or-call-id-prefix": False})
    assert isinstance(structured_but_no_ids, AwsS3Sink)
    assert structured_but_no_ids.object_prefix(report) == f"{SERVICE_ID}/sfu-reports/p"
    root = build_sink("s3", "AwsS3Sink", {**base, "defaultPrefix": ""})
    assert isinstance(root, AwsS3Sink)
    assert root.object_prefix(report) == ""


@pytest.fixture
async def private_moto() -> AsyncIterator[ServerProcess]:
    server = ServerProcess("moto")
    yield server
    await server.close()


async def test_s3_starts_with_server_down_and_recovers_after_a_restart(private_moto: ServerProcess, unique: str,
                                                                      registry: CollectorRegistry) -> None:
    aws = Moto(private_moto.url)
    config = {"bucketName": unique, "regionId": REGION, "endpointOverride": private_moto.url, "defaultPrefix": "r",
              "maxBatchDelayMs": 10, "maxRetries": 30, "maxRetryBackoffMs": 300}
    sink = build_sink("s3", "AwsS3Sink", config, registry)
    await sink.start()  # nothing listens yet: must not raise
    sink.submit(many(10))
    await asyncio.sleep(0.5)
    await private_moto.start()
    # a retry that lands between the server start and the bucket creation fails for good (NoSuchBucket)
    await aws.bucket(unique)
    before = many(10)
    sink.submit(before)

    def settled(total: int) -> bool:
        c = counts(registry, "s3")
        return c["sent"] + c["failed"] + c["dropped"] == total

    await wait_until(lambda: settled(20), timeout=15)
    assert counts(registry, "s3")["sent"] >= 10

    await private_moto.stop()
    sink.submit(many(10))
    await asyncio.sleep(1.0)
    await private_moto.start()  # moto forgets everything: the bucket is made again
    await aws.bucket(unique)
    after = many(10)
    sink.submit(after)

    await wait_until(lambda: settled(40), timeout=20)
    await sink.stop(2)
    bodies = b"".join((await aws.objects(unique)).values()).decode()
    assert all(r.payload["clientId"] in bodies for r in after)
    c = counts(registry, "s3")
    assert c["sent"] >= 20
    assert c["retried"] > 0


# ---- endpoints and credentials -------------------------------------------------------------------------


async def test_standard_endpoint_variables_are_honoured(aws: Moto, unique: str, registry: CollectorRegistry,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    await aws.bucket(unique)
    await aws.stream(unique, unique)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the service variables win over it
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_FIREHOSE", aws.url)
    s3 = build_sink("s3", "AwsS3Sink", {"bucketName": unique, "regionId": REGION, "defaultPrefix": "env",
                                        "maxBatchDelayMs": 10}, registry)
    fh = build_sink("fh", "FirehoseSink", {"regionId": REGION, "defaultDeliveryStreamId": unique,
                                           "maxBatchDelayMs": 10}, registry)
    for sink in (s3, fh):
        await sink.start()
        sink.submit(many(2))
    await wait_until(lambda: counts(registry, "s3")["sent"] == 2 and counts(registry, "fh")["sent"] == 2)
    for sink in (s3, fh):
        await sink.stop(1)
    assert len(await aws.objects(unique, "env/")) == 1
    assert len(await aws.objects(unique, f"{unique}/")) == 1


async def _put_with_credentials(aws: Moto, bucket: str, credentials: dict[str, Any],
                                registry: CollectorRegistry) -> None:
    sink = build_sink("s3", "AwsS3Sink", {"bucketName": bucket, "regionId": REGION, "endpointOverride": aws.url,
                                          "defaultPrefix": "c", "credentials": credentials,
                                          "maxBatchDelayMs": 10}, registry)
    await sink.start()
    sink.submit(many(1))
    await wait_until(lambda: counts(registry, "s3")["sent"] == 1)
    await sink.stop(1)


async def _keys(credentials: dict[str, Any]) -> tuple[str, str, str | None]:
    source = read_credentials(ConfigReader({"credentials": credentials}, "c"), REGION)
    assert source is not None
    frozen = await (await source.load()).get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


async def test_static_environment_and_profile_credentials(aws: Moto, unique: str, tmp_path: Path,
                                                          registry: CollectorRegistry,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    await aws.bucket(unique)
    static = {"type": "AwsStatic", "config": {"accessKeyId": "AKIASTATIC", "secretAccessKey": "s", "sessionToken": "t"}}
    assert await _keys(static) == ("AKIASTATIC", "s", "t")
    await _put_with_credentials(aws, unique, static, registry)

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    for kind in ("AwsEnvironmentVariable", "AwsSystemProperty"):
        assert (await _keys({"type": kind}))[0] == "AKIAENV"

    credentials_file = tmp_path / "credentials"
    credentials_file.write_text("[observer]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = ps\n")
    config_file = tmp_path / "config"
    config_file.write_text("[profile observer]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = cs\n"
                           "region = eu-west-1\n")
    profile = {"type": "AwsProfile", "config": {"profileFilePath": str(credentials_file), "profileName": "observer"}}
    assert await _keys(profile) == ("AKIAPROFILE", "ps", None)
    config_profile = {"type": "AwsProfile", "config": {"profile-file-path": str(config_file),
                                                       "profile-file-type": "CONFIGURATION",
                                                       "profile-name": "observer"}}
    assert await _keys(config_profile) == ("AKIACONFIG", "cs", None)


async def test_assume_role_and_web_identity_credentials_come_from_sts(aws: Moto, unique: str, tmp_path: Path,
                                                                      registry: CollectorRegistry) -> None:
    await aws.bucket(unique)
    assume = {"type": "AwsStsAssumeRoleSession",
              "config": {"roleArn": ROLE, "roleSessionName": "obs", "endpointOverride": aws.url,
                         "externalId": "ext", "credentials": {"type": "AwsStatic",
                                                              "config": {"accessKeyId": "AKIASOURCE",
                                                                         "secretAccessKey": "x"}}}}
    access_key, _, token = await _keys(assume)
    assert access_key.startswith("ASIA") and token  # temporary credentials issued by (moto's) STS
    await _put_with_credentials(aws, unique, assume, registry)

    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJub25lIn0.e30.")
    web = {"type": "AwsWebIdentityTokenFile",
           "config": {"roleArn": ROLE, "webIdentityTokenFile": str(token_file), "endpointOverride": aws.url}}
    access_key, _, token = await _keys(web)
    assert access_key.startswith("ASIA") and token
