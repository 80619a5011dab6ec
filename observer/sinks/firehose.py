"""FirehoseSink: PutRecordBatch into Kinesis Data Firehose delivery streams, one stream per report type."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import orjson
from prometheus_client import CollectorRegistry

from observer.reports.csv import encode_csv, group_by_type
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
from observer.sinks.settings import ConfigReader

# PutRecordBatch quotas: 500 records and 4 MiB per call, 1,000 KiB per record (before base64).
MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024


@attrs.frozen
class _Record:
    data: bytes
    reports: Sequence[Report]


class FirehoseSink(Sink):
    """Config: ``regionId`` (required), ``defaultDeliveryStreamId`` and/or ``streams`` {report type (kebab,
    camel or UPPER_SNAKE) -> stream name} (at least one), ``encodingType`` CSV (default) | JSON,
    ``csvFormat`` (DEFAULT), ``csvChunkSize`` (100 CSV lines per record), ``credentials``,
    ``endpointOverride``.

    JSON records are one report payload each, newline-terminated (so the objects Firehose writes are
    newline-delimited JSON). CSV records hold up to csvChunkSize lines of one report type, without header.
    Records a call could not put (FailedPutCount) are the only ones retried. Types with no stream are
    dropped (reason ``unrouted``); a single report larger than 1,000 KiB is dropped (``too_large``)."""

    type_name = "FirehoseSink"
    default_batch = BatchSettings(max_batch_size=2000, max_batch_delay=0.5)

    def __init__(self, name: str, *, region: str, streams: Mapping[ReportType, str],
                 default_stream: str | None = None, encoding: str = "CSV", csv_format: str = "DEFAULT",
                 csv_chunk_size: int = 100, credentials: AwsCredentials | None = None,
                 endpoint: str | None = None, batch: BatchSettings | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, batch, registry)
        self.region = region
        self.streams = dict(streams)
        self.default_stream = default_stream
        self.encoding = encoding
        self.csv_format = csv_format
        self.csv_chunk_size = csv_chunk_size
        self._aws = AwsClient("firehose", region, endpoint, credentials)

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None,
                    registry: CollectorRegistry | None = None) -> FirehoseSink:
        reader = ConfigReader(config, f"observer.sinks.{name}.config")
        region = read_region(reader)
        streams = reader.report_type_map("streams")
        default_stream = reader.string("defaultDeliveryStreamId", None, allow_empty=False)
        if not streams and default_stream is None:
            raise reader.error("defaultDeliveryStreamId", "give defaultDeliveryStreamId and/or streams")
        encoding = reader.choice("encodingType", ("CSV", "JSON"), "CSV")
        csv_format = read_csv_format(reader)
        sink = cls(
            name, region=region, streams=streams, default_stream=default_stream, encoding=encoding,
            csv_format=csv_format, csv_chunk_size=reader.integer("csvChunkSize", 100, minimum=1),
            credentials=read_credentials(reader, region), endpoint=read_endpoint(reader),
            batch=BatchSettings.read(reader, cls.default_batch), registry=registry,
        )
        reader.finish()
        return sink

    async def _open(self) -> None:
        await self._aws.open()

    async def _close(self) -> None:
        await self._aws.close()

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        by_stream: dict[str, list[Report]] = {}
        unrouted = 0
        for report in batch:
            stream = self.streams.get(report.type, self.default_stream)
            if stream is None:
                unrouted += 1
            else:
                by_stream.setdefault(stream, []).append(report)
        dropped = {"unrouted": unrouted}
        retry: list[Report] = []
        failed: list[Report] = []
        error: BaseException | None = None
        delivered = 0
        for stream, reports in by_stream.items():
            records, too_large = self._records(reports)
            dropped["too_large"] = dropped.get("too_large", 0) + too_large
            for call in _calls(records):
                try:
                    response = await self._aws.client.put_record_batch(
                        DeliveryStreamName=stream, Records=[{"Data": r.data} for r in call])
                except Exception as exc:
                    error = exc
                    target = failed if is_permanent(exc) else retry
                    for record in call:
                        target.extend(record.reports)
                    continue
                results = response.get("RequestResponses", [])
                if response.get("FailedPutCount", 0):
                    codes: dict[str, int] = {}
                    for record, result in zip(call, results, strict=False):
                        if "ErrorCode" in result:
                            retry.extend(record.reports)
                            codes[result["ErrorCode"]] = codes.get(result["ErrorCode"], 0) + 1
                    error = RuntimeError(f"stream {stream}: {response['FailedPutCount']} records failed "
                                         f"({', '.join(f'{c} x{n}' for c, n in codes.items())})")
                delivered += len(call)
        too_large = dropped.get("too_large", 0)
        if error is not None and not (delivered or failed or unrouted or too_large):
            raise error
        if not (retry or failed or unrouted or too_large):
            return None
        return SendOutcome(retry=retry, failed=failed, dropped=dropped, error=error)

    def _records(self, reports: list[Report]) -> tuple[list[_Record], int]:
        records: list[_Record] = []
        too_large = 0
        if self.encoding == "JSON":
            for report in reports:
                data = orjson.dumps(report.payload) + b"\n"
                if len(data) > MAX_RECORD_BYTES:
                    too_large += 1
                else:
                    records.append(_Record(data, (report,)))
            return records, too_large
        for same_type in group_by_type(reports).values():
            for start in range(0, len(same_type), self.csv_chunk_size):
                too_large += self._csv_records(same_type[start:start + self.csv_chunk_size], records)
        return records, too_large

    def _csv_records(self, chunk: Sequence[Report], out: list[_Record]) -> int:
        data = encode_csv(chunk, self.csv_format).encode()
        if len(data) <= MAX_RECORD_BYTES:
            out.append(_Record(data, chunk))
            return 0
        if len(chunk) == 1:
            return 1
        half = len(chunk) // 2
        return self._csv_records(chunk[:half], out) + self._csv_records(chunk[half:], out)


def _calls(records: list[_Record]) -> Iterator[list[_Record]]:
    call: list[_Record] = []
    size = 0
    for record in records:
        if call and (len(call) == MAX_RECORDS_PER_CALL or size + len(record.data) > MAX_BYTES_PER_CALL):
            yield call
            call, size = [], 0
        call.append(record)
        size += len(record.data)
    if call:
        yield call

