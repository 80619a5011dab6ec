"""Samples: the data model handed to the pipeline and the JSON / protobuf frame decoders."""

from observer.samples.decoder import (
    FORMAT_JSON,
    FORMAT_PROTOBUF,
    KIND_CLIENT,
    KIND_SFU,
    Decoder,
    make_decoder,
)
from observer.samples.model import (
    REASON_INVALID_FIELD,
    REASON_MISSING_FIELD,
    REASON_NOT_AN_OBJECT,
    DecodedSamples,
    ReceivedSamples,
    Rejection,
    Sample,
    SamplesConsumer,
    SamplesError,
)
from observer.samples.version import LATEST_VERSION, SUPPORTED_VERSIONS, SchemaVersion, parse_schema_version

__all__ = [
    "FORMAT_JSON",
    "FORMAT_PROTOBUF",
    "KIND_CLIENT",
    "KIND_SFU",
    "LATEST_VERSION",
    "REASON_INVALID_FIELD",
    "REASON_MISSING_FIELD",
    "REASON_NOT_AN_OBJECT",
    "SUPPORTED_VERSIONS",
    "DecodedSamples",
    "Decoder",
    "ReceivedSamples",
    "Rejection",
    "Sample",
    "SamplesConsumer",
    "SamplesError",
    "SchemaVersion",
    "make_decoder",
    "parse_schema_version",
]
