"""MongoSink: report envelopes inserted as documents with pymongo's AsyncMongoClient."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote_plus, urlencode

from bson import ObjectId
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, uri_parser
from pymongo.errors import BulkWriteError, ConfigurationError, InvalidURI, OperationFailure, PyMongoError

from observer.reports.model import Report, ReportType
from observer.sinks.base import BatchSettings, SendOutcome, Sink
from observer.sinks.settings import ConfigReader

ONE_COLLECTION_NAME = "reports"
# the reference's REPORT_TYPE_BASED names, plus the two it had forgotten (ICE pairs, SFU extensions)
REPORT_TYPE_COLLECTIONS: dict[ReportType, str] = {
    ReportType.OBSERVER_EVENT: "ObserverEventReports",
    ReportType.CALL_EVENT: "CallEventReports",
    ReportType.CALL_META_DATA: "CallMetaReports",
    ReportType.CLIENT_EXTENSION_DATA: "ClientExtensionReports",
    ReportType.PEER_CONNECTION_TRANSPORT: "ClientTransportReports",
    ReportType.ICE_CANDIDATE_PAIR: "IceCandidatePairReports",
    ReportType.PEER_CONNECTION_DATA_CHANNEL: "ClientDataChannelReports",
    ReportType.INBOUND_AUDIO_TRACK: "InboundAudioTrackReports",
    ReportType.INBOUND_VIDEO_TRACK: "InboundVideoTrackReports",
    ReportType.OUTBOUND_AUDIO_TRACK: "OutboundAudioTrackReports",
    ReportType.OUTBOUND_VIDEO_TRACK: "OutboundVideoTrackReports",
    ReportType.SFU_EVENT: "SfuEventReports",
    ReportType.SFU_META_DATA: "SfuMetaReports",
    ReportType.SFU_EXTENSION_DATA: "SfuExtensionReports",
    ReportType.SFU_TRANSPORT: "SFUTransportReports",
    ReportType.SFU_INBOUND_RTP_PAD: "SfuInboundRtpPadReports",
    ReportType.SFU_OUTBOUND_RTP_PAD: "SfuOutboundRtpPadReports",
    ReportType.SFU_SCTP_STREAM: "SfuSctpStreamReports",
}
UNKNOWN_SERVICE_COLLECTION = "unknown-services"
STRATEGIES = ("ONE_COLLECTION", "REPORT_TYPE_BASED", "SERVICE_ID_BASED")
_DUPLICATE_KEY = 11000
_CLIENT_DEFAULTS = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000, "appname": "observer"}

_log = logging.getLogger(__name__)


class MongoSink(Sink):
    """Config: ``uri`` or ``connection`` {servers: [host:port], username, password, options: {k: v}}
    (exactly one), ``database`` (required), ``savingStrategy`` ONE_COLLECTION (collection "reports",
    default) | REPORT_TYPE_BASED (one collection per type, see REPORT_TYPE_COLLECTIONS) | SERVICE_ID_BASED
    (collection = serviceId), ``collectionNames`` {report type -> collection} overrides the
    REPORT_TYPE_BASED names, ``printSummary`` (false).

    Unknown keys are an error, as in every other sink (the reference ignored them here, which hid typos
    such as a misspelled savingStrategy). Documents are ``{_id, type, schemaVersion, payload}`` (nulls kept),
    written with one unordered insert_many per collection. The ``_id`` is fixed before the first attempt,
    so a retry after a lost reply does not insert twice (the duplicates come back as E11000 and count as
    delivered)."""

    type_name = "MongoSink"
    default_batch = BatchSettings(max_batch_size=1000, max_batch_delay=0.2)

    def __init__(self, name: str, uri: str, database: str, *, strategy: str = "ONE_COLLECTION",
                 collection_names: Mapping[ReportType, str] | None = None, print_summary: bool = False,
                 client_options: Mapping[str, Any] | None = None, batch: BatchSettings | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, batch, registry)
        self._uri = uri
        self.database = database
        self.strategy = strategy
        self.collections = {**REPORT_TYPE_COLLECTIONS, **(collection_names or {})}
        self.print_summary = print_summary
        self._client_options = dict(client_options or {})
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._pending: dict[int, tuple[Report, dict[str, Any]]] = {}

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None,
                    registry: CollectorRegistry | None = None) -> MongoSink:
        reader = ConfigReader(config, f"observer.sinks.{name}.config")
        connection = reader.section("connection")
        if reader.has("uri") == (connection is not None):
            raise reader.error("uri", "give exactly one of uri and connection")
        if connection is not None:
            uri = _uri_from_connection(connection)
            uri_key = "connection"
        else:
            uri = reader.secret("uri")
            uri_key = "uri"
        options = _check_uri(reader, uri_key, uri)
        database = reader.string("database", allow_empty=False)
        if re.search(r'[/\\. "$\x00]', database) or len(database) > 63:
            raise reader.error("database", f"{database!r} is not a valid MongoDB database name")
        collection_names = reader.report_type_map("collectionNames")
        for report_type, collection in collection_names.items():
            if not _valid_collection(collection):
                raise reader.error("collectionNames", f"{collection!r} ({report_type.value}) is not a valid "
                                                      "collection name")
        sink = cls(
            name, uri, database, strategy=reader.choice("savingStrategy", STRATEGIES, "ONE_COLLECTION"),
            collection_names=collection_names, print_summary=reader.boolean("printSummary", False),
            client_options={k: v for k, v in _CLIENT_DEFAULTS.items() if k.lower() not in options},
            batch=BatchSettings.read(reader, cls.default_batch), registry=registry,
        )
        # the reference's MongoSink config ignored unknown keys, so existing configs may carry some:
        # they load, with a warning naming them (every other sink rejects unknown keys)
        for key in reader.unknown_keys():
            _log.warning("observer.sinks.%s.config.%s: unknown MongoSink key ignored", name, key)
        return sink

    def collection_of(self, report: Report) -> str:
        if self.strategy == "REPORT_TYPE_BASED":
            return self.collections[report.type]
        if self.strategy == "SERVICE_ID_BASED":
            service = (report.service_id or "").replace("$", "_").replace("\x00", "")
            return service if _valid_collection(service) else UNKNOWN_SERVICE_COLLECTION
        return ONE_COLLECTION_NAME

    async def _open(self) -> None:
        self._client = AsyncMongoClient(self._uri, **self._client_options)
        await self._client.admin.command("ping")  # the client connects lazily: make "connected" mean it

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        assert self._client is not None
        db = self._client[self.database]
        groups: dict[str, list[tuple[Report, dict[str, Any]]]] = {}
        for report in batch:
            groups.setdefault(self.collection_of(report), []).append((report, self._document(report)))
        retry: list[Report] = []
        failed: list[Report] = []
        error: BaseException | None = None
        for collection, items in groups.items():
            try:
                await db[collection].insert_many([doc for _, doc in items], ordered=False)
            except BulkWriteError as exc:
                rejected = [e for e in exc.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
                failed.extend(items[e["index"]][0] for e in rejected)
                if rejected:
                    first = rejected[0]
                    error = OperationFailure(first.get("errmsg", "write error"), first.get("code"))
                inserted = len(items) - len(rejected)
            except (OperationFailure, PyMongoError) as exc:
                # connection loss, no primary, timeouts: all transient from here; the base bounds the retries
                error = exc
                retry.extend(r for r, _ in items)
                continue
            else:
                inserted = len(items)
            if self.print_summary:
                self.log.info("sink %s: inserted %d reports into %s.%s", self.name, inserted, self.database,
                              collection)
        self._pending = {id(r): (r, self._document(r)) for r in retry}
        if not retry and not failed:
            return None
        if error is not None and len(retry) == len(batch):
            raise error
        return SendOutcome(retry=retry, failed=failed, error=error)

    def _document(self, report: Report) -> dict[str, Any]:
        cached = self._pending.get(id(report))
        if cached is not None and cached[0] is report:
            return cached[1]
        return {"_id": ObjectId(), **report.to_envelope()}


def _uri_from_connection(c: ConfigReader) -> str:
    servers = c.string_list("servers")
    username = c.secret("username", None)
    password = c.secret("password", None)
    options = c.mapping("options") or {}
    c.finish()
    credentials = ""
    if username is not None:
        credentials = quote_plus(username)
        if password is not None:
            credentials += ":" + quote_plus(password)
        credentials += "@"
    query = f"/?{urlencode({str(k): _option_text(v) for k, v in options.items()})}" if options else "/"
    return f"mongodb://{credentials}{','.join(servers)}{query}"


def _option_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_uri(reader: ConfigReader, key: str, uri: str) -> set[str]:
    """The (lower-cased) option names the URI sets. The message never repeats the URI (it may hold a
    password)."""
    if uri.startswith("mongodb+srv://"):
        return {m.lower() for m in re.findall(r"[?&]([^=&]+)=", uri)}  # parsing would resolve DNS
    if not uri.startswith("mongodb://"):
        raise reader.error(key, "must start with mongodb:// or mongodb+srv://")
    try:
        parsed = uri_parser.parse_uri(uri)
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        message = str(exc).replace(uri, "<uri>")
        raise reader.error(key, f"invalid MongoDB URI: {message}") from None
    return {k.lower() for k in parsed["options"]}


def _valid_collection(name: str) -> bool:
    return bool(name) and "$" not in name and "\x00" not in name and not name.startswith("system.") \
        and len(name) < 120
