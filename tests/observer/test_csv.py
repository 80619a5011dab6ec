"""CSV encoding: normative column order, every report type, every commons-csv format, BUG 11."""

from __future__ import annotations

import csv
import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from observer.reports.csv import (
    CSV_FORMAT_NAMES,
    CsvFormat,
    csv_columns,
    encode_csv,
    encode_csv_chunks,
    group_by_type,
)
from observer.reports.model import SCHEMA_NAME, Report, ReportType
from observer.reports.schema import conform
from tests.observer.test_reports_conformance import all_fixture_reports, avsc_fields

HEADERS = Path(__file__).resolve().parents[2] / "observer" / "schemas" / "csv"


@cache
def _fixture_reports() -> dict[ReportType, list[Report]]:
    groups = group_by_type(all_fixture_reports())
    # the observer never produces these two; build one of each from plain values
    for report_type, values in (
        (
            ReportType.OBSERVER_EVENT,
            {
                "serviceId": "svc",
                "timestamp": 1,
                "callId": "c",
                "name": "NO_SSRC",
                "message": 'quote " and, comma',
                "sampleSeq": 3,
            },
        ),
        (
            ReportType.SFU_META_DATA,
            {"serviceId": "svc", "timestamp": 2, "sfuId": "s", "type": "X", "payload": '{"a": 1,\n"b": 2}'},
        ),
    ):
        payload = conform(report_type, values)
        assert payload is not None
        groups[report_type] = [Report(report_type, payload)]
    return groups


def _text(value: Any, trim: bool = False) -> str | None:
    """What a value must read back as (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return text.strip() if trim else text


# ------------------------------------------------------------------------------------------
# columns


@pytest.mark.parametrize("report_type", list(ReportType))
def test_columns_are_the_header_file_and_the_schema_fields(report_type: ReportType) -> None:
    header = (HEADERS / f"{SCHEMA_NAME[report_type]}-csv-header.txt").read_text()
    assert csv_columns(report_type) == [c.strip() for c in header.split(",")]
    assert sorted(csv_columns(report_type)) == sorted(f["name"] for f in avsc_fields(report_type))


def test_column_order_follows_the_spec() -> None:
    assert csv_columns(ReportType.CALL_EVENT)[:4] == ["serviceId", "timestamp", "name", "attachments"]
    assert (
        csv_columns(ReportType.CALL_EVENT).index("SSRC")
        == csv_columns(ReportType.CALL_EVENT).index("userId") - 1
    )
    assert csv_columns(ReportType.SFU_OUTBOUND_RTP_PAD)[:9] == [
        "serviceId",
        "mediaUnitId",
        "sfuId",
        "timestamp",
        "transportId",
        "sfuStreamId",
        "sfuSinkId",
        "rtpPadId",
        "ssrc",
    ]
    columns = csv_columns(ReportType.INBOUND_AUDIO_TRACK)
    assert columns[:8] == [
        "serviceId",
        "mediaUnitId",
        "timestamp",
        "callId",
        "clientId",
        "peerConnectionId",
        "sampleSeq",
        "ssrc",
    ]
    assert columns[8:] == sorted(columns[8:], key=str.lower)


def test_csv_columns_returns_a_copy() -> None:
    columns = csv_columns(ReportType.CALL_EVENT)
    columns.clear()
    assert csv_columns(ReportType.CALL_EVENT)


# ------------------------------------------------------------------------------------------
# round trips


def _read_quoted(text: str, fmt: CsvFormat) -> list[list[str]]:
    escape = fmt.escape if fmt.escape not in (None, fmt.quote) else None
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=fmt.delimiter,
        quotechar=fmt.quote,
        escapechar=escape,
        doublequote=True,
        strict=True,
    )
    return list(reader)


def _read_escaped(text: str, fmt: CsvFormat) -> list[list[str | None]]:
    """MySQL / PostgreSQL text: no quotes, backslash escapes, \\N for null."""
    assert fmt.escape == "\\"
    rows: list[list[str | None]] = []
    for line in text.split(fmt.record_separator)[:-1]:
        fields: list[str | None] = []
        raw, value, i = "", "", 0
        while i <= len(line):
            c = line[i] if i < len(line) else fmt.delimiter
            if i == len(line) or c == fmt.delimiter:
                fields.append(None if raw == fmt.null_string else value)
                raw, value = "", ""
            elif c == "\\":
                nxt = line[i + 1]
                raw += c + nxt
                value += {"n": "\n", "r": "\r"}.get(nxt, nxt)
                i += 1
            else:
                raw += c
                value += c
            i += 1
        rows.append(fields)
    return rows


def _read(text: str, fmt: CsvFormat) -> list[list[str | None]]:
    if fmt.quote is None:
        return _read_escaped(text, fmt)
    rows: list[list[str | None]] = [list(r) for r in _read_quoted(text, fmt)]
    return rows


@pytest.mark.parametrize("report_type", list(ReportType))
def test_every_report_type_round_trips_in_the_default_format(report_type: ReportType) -> None:
    reports = _fixture_reports()[report_type]
    text = encode_csv(reports)
    rows = _read(text, CsvFormat.named("DEFAULT"))
    columns = csv_columns(report_type)
    assert len(rows) == len(reports)
    for report, row in zip(reports, rows, strict=True):
        assert len(row) == len(columns)
        for column, cell in zip(columns, row, strict=True):
            assert cell == (_text(report.payload[column]) or ""), column


@pytest.mark.parametrize("name", CSV_FORMAT_NAMES)
def test_every_format_round_trips(name: str) -> None:
    fmt = CsvFormat.named(name)
    # data with delimiters, quotes, backslashes, newlines, tabs and surrounding spaces
    reports = [*_fixture_reports()[ReportType.CALL_META_DATA][:40], _tricky_meta_report()]
    text = encode_csv(reports, name)
    assert text.endswith(fmt.record_separator)
    rows = _read(text, fmt)
    columns = csv_columns(ReportType.CALL_META_DATA)
    assert len(rows) == len(reports)
    for report, row in zip(reports, rows, strict=True):
        expected = [_text(report.payload[c], trim=fmt.trim) for c in columns]
        if fmt.quote is not None:
            # a quoted reader returns null as it reads the (unescaped) null string: ORACLE's \N as N
            null = _read_quoted(fmt.null_string + "\n", fmt)[0][0] if fmt.null_string else ""
            expected = [null if v is None else v for v in expected]
        assert row == expected


def _tricky_meta_report() -> Report:
    payload = conform(
        ReportType.CALL_META_DATA,
        {
            "serviceId": "svc",
            "timestamp": 1,
            "callId": " spaced ",
            "clientId": "",
            "marker": 'a,b|c\td"e\\f',
            "payload": "line1\nline2\r\nline3",
            "type": "#hash",
            "sampleSeq": -1,
        },
    )
    assert payload is not None
    return Report(ReportType.CALL_META_DATA, payload)


def test_null_and_empty_string_differ_in_the_default_format() -> None:
    text = encode_csv([_tricky_meta_report()])
    columns = csv_columns(ReportType.CALL_META_DATA)
    record = text.removesuffix("\r\n")
    cells = next(csv.reader([record]))
    assert cells[columns.index("clientId")] == ""
    # the empty clientId is quoted, the null userId is not
    assert ',"",' in record and record.endswith(",")  # userId (last column) is null


def test_postgresql_csv_quotes_every_non_null_value() -> None:
    text = encode_csv([_tricky_meta_report()], "POSTGRESQL_CSV")
    assert text.startswith('"svc","1",')
    assert text.endswith(",\n")  # the null userId is the unquoted empty string


@pytest.mark.parametrize(
    ("name", "null"), [("MYSQL", "\\N"), ("POSTGRESQL_TEXT", "\\N"), ("ORACLE", "\\N"), ("DEFAULT", "")]
)
def test_null_strings(name: str, null: str) -> None:
    fmt = CsvFormat.named(name)
    record = encode_csv([_tricky_meta_report()], name).removesuffix(fmt.record_separator)
    assert record.endswith(fmt.delimiter + null)


def test_oracle_trims_values() -> None:
    record = encode_csv([_tricky_meta_report()], "ORACLE")
    assert ",spaced," in record


@pytest.mark.parametrize(
    ("name", "delimiter", "separator"),
    [
        ("DEFAULT", ",", "\r\n"),
        ("EXCEL", ",", "\r\n"),
        ("RFC4180", ",", "\r\n"),
        ("TDF", "\t", "\r\n"),
        ("MYSQL", "\t", "\n"),
        ("POSTGRESQL_CSV", ",", "\n"),
        ("POSTGRESQL_TEXT", "\t", "\n"),
        ("INFORMIX_UNLOAD", "|", "\n"),
        ("INFORMIX_UNLOAD_CSV", ",", "\n"),
        ("MONGODB_CSV", ",", "\r\n"),
        ("MONGODB_TSV", "\t", "\r\n"),
        ("ORACLE", ",", "\n"),
    ],
)
def test_format_parameters(name: str, delimiter: str, separator: str) -> None:
    fmt = CsvFormat.named(name)
    assert (fmt.delimiter, fmt.record_separator) == (delimiter, separator)


@pytest.mark.parametrize("alias", ["postgresql_csv", "PostgreSQLCsv", "PostgreSQL-CSV"])
def test_format_names_are_case_and_underscore_insensitive(alias: str) -> None:
    assert CsvFormat.named(alias).name == "POSTGRESQL_CSV"


def test_unknown_format_name_is_an_error_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown csvFormat 'JSONL'.*DEFAULT"):
        encode_csv(_fixture_reports()[ReportType.CALL_EVENT], "JSONL")


# ------------------------------------------------------------------------------------------
# grouping and chunks


def test_bug_11_the_configured_format_applies_to_every_chunk() -> None:
    reports = _fixture_reports()[ReportType.INBOUND_AUDIO_TRACK][:5]
    chunks = encode_csv_chunks(reports, "MYSQL", chunk_size=2)
    assert [t for t, _ in chunks] == [ReportType.INBOUND_AUDIO_TRACK] * 3
    for _, text in chunks:
        assert "\r\n" not in text and "," not in text.replace("\\,", "")
        assert text.count("\n") == len(text.splitlines())
        for line in text.splitlines():
            assert len(line.split("\t")) == len(csv_columns(ReportType.INBOUND_AUDIO_TRACK))
    assert "".join(text for _, text in chunks) == encode_csv(reports, "MYSQL")


def test_chunks_are_grouped_by_type() -> None:
    events = _fixture_reports()[ReportType.CALL_EVENT][:3]
    meta = _fixture_reports()[ReportType.CALL_META_DATA][:1]
    mixed = [events[0], meta[0], events[1], events[2]]
    chunks = encode_csv_chunks(mixed, chunk_size=2)
    assert [(t, text.count("\r\n")) for t, text in chunks] == [
        (ReportType.CALL_EVENT, 2),
        (ReportType.CALL_EVENT, 1),
        (ReportType.CALL_META_DATA, 1),
    ]
    with pytest.raises(ValueError):
        encode_csv_chunks(mixed, chunk_size=0)


def test_group_by_type_keeps_order() -> None:
    events = _fixture_reports()[ReportType.CALL_EVENT][:2]
    meta = _fixture_reports()[ReportType.CALL_META_DATA][:2]
    groups = group_by_type([meta[0], events[0], meta[1], events[1]])
    assert list(groups) == [ReportType.CALL_META_DATA, ReportType.CALL_EVENT]
    assert groups[ReportType.CALL_META_DATA] == meta and groups[ReportType.CALL_EVENT] == events


def test_mixed_types_in_one_encode_call_are_refused() -> None:
    mixed = [_fixture_reports()[ReportType.CALL_EVENT][0], _fixture_reports()[ReportType.CALL_META_DATA][0]]
    with pytest.raises(ValueError, match="group them by type"):
        encode_csv(mixed)


def test_empty_input() -> None:
    assert encode_csv([]) == ""
    assert encode_csv_chunks([]) == []


def test_values_render_like_commons_csv() -> None:
    (report,) = [
        r for r in _fixture_reports()[ReportType.OUTBOUND_AUDIO_TRACK] if r.payload["active"] is True
    ][:1]
    cells = dict(
        zip(
            csv_columns(ReportType.OUTBOUND_AUDIO_TRACK),
            next(csv.reader([encode_csv([report]).removesuffix("\r\n")])),
            strict=True,
        )
    )
    assert cells["active"] == "true"
    assert cells["ssrc"] == str(report.payload["ssrc"])
    assert json.loads(cells["jitter"]) == report.payload["jitter"]
