"""AwsS3Sink: reports written as objects (CSV or newline-delimited JSON) into an S3 bucket."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from observer.reports.csv import encode_csv
from observer.reports.model import Report, ReportType
from observer.sinks.aws import (
    AwsClient,
    AwsCredentials,
    is_permanent,
    read_credentials,
    read_csv_format,
    read_endpoint,
    read_region,
)
from observer.sinks.base import BatchSettings, SendOutcome, Sink
from observer.sinks.report_ids import is_sfu_report
from observer.sinks.settings import ConfigReader

REPORTS_PER_OBJECT = 450


class AwsS3Sink(Sink):
    """Config: ``bucketName``, ``regionId`` (both required), ``defaultPrefix`` and/or ``prefixes``
    {report type -> prefix} (at least one; ``defaultPrefix: ""`` puts objects at the bucket root),
    ``addServiceIdPrefix``, ``addReportCategoryPrefix``, ``addSfuOrCallIdPrefix`` (false; ``structured: true``
    turns all three on), ``encodingType`` CSV (default) | JSON, ``csvFormat`` (DEFAULT), ``parallelism``
    (10 concurrent uploads), ``credentials``, ``endpointOverride``.

    Object key: ``[<serviceId>/][call-reports|sfu-reports/][<callId>|<sfuId>/]<prefix>/
    <yyyyMMddHHmmss UTC>-<report-type>-<sink instance token>-<sequence>.<csv|json>``; missing ids become
    unknown-services / unknown-calls / unknown-sfus. The token is random per sink instance and the sequence
    counts every object the instance writes, so keys never collide. An object holds up to 450 reports of
    one type: CSV lines without header, or one payload JSON per line."""

    type_name = "AwsS3Sink"
    default_batch = BatchSettings(max_batch_size=5000, max_batch_delay=1.0)

    def __init__(self, name: str, *, bucket: str, region: str, prefixes: Mapping[ReportType, str],
                 default_prefix: str | None = None, add_service_id_prefix: bool = False,
                 add_report_category_prefix: bool = False, add_sfu_or_call_id_prefix: bool = False,
                 encoding: str = "CSV", csv_format: str = "DEFAULT", parallelism: int = 10,
                 credentials: AwsCredentials | None = None, endpoint: str | None = None,
                 batch: BatchSettings | None = None, registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, batch, registry)
        self.bucket = bucket
        self.prefixes = {t: p.strip("/") for t, p in prefixes.items()}
        self.default_prefix = default_prefix.strip("/") if default_prefix is not None else None
        self.add_service_id_prefix = add_service_id_prefix
        self.add_report_category_prefix = add_report_category_prefix
        self.add_sfu_or_call_id_prefix = add_sfu_or_call_id_prefix
        self.encoding = encoding
        self.csv_format = csv_format
        self.parallelism = parallelism
        self._aws = AwsClient("s3", region, endpoint, credentials, max_pool_connections=parallelism)
        self._token = uuid.uuid4().hex[:12]
        self._sequence = itertools.count(1)

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None,
                    registry: CollectorRegistry | None = None) -> AwsS3Sink:
        reader = ConfigReader(config, f"observer.sinks.{name}.config")
        bucket = reader.string("bucketName", allow_empty=False)
        region = read_region(reader)
        prefixes = reader.report_type_map("prefixes")
        default_prefix = reader.string("defaultPrefix", None)
        if not prefixes and default_prefix is None:
            raise reader.error("defaultPrefix", "give defaultPrefix and/or prefixes")
        structured = reader.boolean("structured", False)
        if reader.boolean("createIndexes", False):
            raise reader.error("createIndexes", "index objects are not supported")
        csv_format = read_csv_format(reader)
        sink = cls(
            name, bucket=bucket, region=region, prefixes=prefixes, default_prefix=default_prefix,
            add_service_id_prefix=reader.boolean("addServiceIdPrefix", structured),
            add_report_category_prefix=reader.boolean("addReportCategoryPrefix", structured),
            add_sfu_or_call_id_prefix=reader.boolean("addSfuOrCallIdPrefix", structured),
            encoding=reader.choice("encodingType", ("CSV", "JSON"), "CSV"), csv_format=csv_format,
            parallelism=reader.integer("parallelism", 10, minimum=1, maximum=100),
            credentials=read_credentials(reader, region), endpoint=read_endpoint(reader),
            batch=BatchSettings.read(reader, cls.default_batch), registry=registry,
        )
        reader.finish()
        return sink

    async def _open(self) -> None:
        await self._aws.open()

    async def _close(self) -> None:
        await self._aws.close()

    def object_prefix(self, report: Report) -> str | None:
        """The key prefix of ``report`` (without the trailing slash), or None if its type has no prefix."""
        type_prefix = self.prefixes.get(report.type, self.default_prefix)
        if type_prefix is None:
            return None
        sfu = is_sfu_report(report)
        parts: list[str] = []
        if self.add_service_id_prefix:
            parts.append(_segment(report.service_id) or "unknown-services")
        if self.add_report_category_prefix:
            parts.append("sfu-reports" if sfu else "call-reports")
        if self.add_sfu_or_call_id_prefix:
            if sfu:
                parts.append(_segment(report.sfu_id) or "unknown-sfus")
            else:
                parts.append(_segment(report.call_id) or "unknown-calls")
        if type_prefix:
            parts.append(type_prefix)
        return "/".join(parts)

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        groups: dict[tuple[str, ReportType], list[Report]] = {}
        unrouted = 0
        for report in batch:
            prefix = self.object_prefix(report)
            if prefix is None:
                unrouted += 1
            else:
                groups.setdefault((prefix, report.type), []).append(report)
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        objects = [
            (self._key(prefix, report_type, stamp), reports[start:start + REPORTS_PER_OBJECT])
            for (prefix, report_type), reports in groups.items()
            for start in range(0, len(reports), REPORTS_PER_OBJECT)
        ]
        limit = asyncio.Semaphore(self.parallelism)

        async def upload(key: str, reports: Sequence[Report]) -> BaseException | None:
            async with limit:
                try:
                    body, content_type = self._encode(reports)
                    await self._aws.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                                      ContentType=content_type,
                                                      Metadata={"report-type": reports[0].type.value})
                except Exception as exc:
                    return exc
            return None

        results = await asyncio.gather(*(upload(key, reports) for key, reports in objects))
        retry: list[Report] = []
        failed: list[Report] = []
        error: BaseException | None = None
        for (_, reports), result in zip(objects, results, strict=True):
            if result is not None:
                error = result
                (failed if is_permanent(result) else retry).extend(reports)
        if error is not None and not failed and not unrouted and len(retry) == len(batch):
            raise error
        if not (retry or failed or unrouted):
            return None
        return SendOutcome(retry=retry, failed=failed, dropped={"unrouted": unrouted}, error=error)

    def _key(self, prefix: str, report_type: ReportType, stamp: str) -> str:
        extension = "json" if self.encoding == "JSON" else "csv"
        name = f"{stamp}-{report_type.value.lower().replace('_', '-')}-{self._token}-{next(self._sequence)}"
        return f"{prefix}/{name}.{extension}" if prefix else f"{name}.{extension}"

    def _encode(self, reports: Sequence[Report]) -> tuple[bytes, str]:
        if self.encoding == "JSON":
            return b"".join(orjson.dumps(r.payload) + b"\n" for r in reports), "application/x-ndjson"
        return encode_csv(reports, self.csv_format).encode(), "text/csv"


def _segment(value: str | None) -> str:
    """An id as one key segment: a '/' inside it would add a level."""
    return value.replace("/", "_").strip() if value else ""
