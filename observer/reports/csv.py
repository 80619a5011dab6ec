"""CSV encoding of reports (spec/observer.md §8.3, spec/schemas.md §3.2).

No header row; one record per report; the column order of each report type is the normative
``schemas/csv/<Schema>-csv-header.txt``. The format is one of the Apache commons-csv predefined
formats the reference's ``csvFormat`` setting names; it applies to every chunk (BUG 11 fixed: the
reference fell back to DEFAULT after the first chunk). Values print as commons-csv prints them:
null as the format's null string, booleans as ``true``/``false``.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

import attrs

from observer.reports.model import SCHEMA_NAME, Report, ReportType


@attrs.frozen
class CsvFormat:
    """The printing side of a commons-csv format.

    ``quote`` None means values are never quoted and special characters are escaped with ``escape``
    (MySQL / PostgreSQL text style); ``quote_all_non_null`` quotes every non-null value
    (QuoteMode.ALL_NON_NULL); otherwise values are quoted when needed (QuoteMode.MINIMAL).
    """

    name: str
    delimiter: str
    quote: str | None
    escape: str | None
    record_separator: str
    null_string: str = ""
    quote_all_non_null: bool = False
    trim: bool = False

    @classmethod
    def named(cls, name: str) -> CsvFormat:
        """The format of a commons-csv predefined format name; case, ``_`` and ``-`` do not matter,
        so both the constant (POSTGRESQL_CSV) and the Predefined enum name (PostgreSQLCsv) work."""
        found = _FORMATS_BY_KEY.get(_format_key(name))
        if found is None:
            raise ValueError(f"unknown csvFormat {name!r}; expected one of {', '.join(CSV_FORMAT_NAMES)}")
        return found


_FORMATS: tuple[CsvFormat, ...] = (
    CsvFormat("DEFAULT", ",", '"', None, "\r\n"),
    CsvFormat("EXCEL", ",", '"', None, "\r\n"),
    CsvFormat("RFC4180", ",", '"', None, "\r\n"),
    CsvFormat("TDF", "\t", '"', None, "\r\n"),
    CsvFormat("INFORMIX_UNLOAD", "|", '"', "\\", "\n"),
    CsvFormat("INFORMIX_UNLOAD_CSV", ",", '"', None, "\n"),
    CsvFormat("MONGODB_CSV", ",", '"', '"', "\r\n"),
    CsvFormat("MONGODB_TSV", "\t", '"', '"', "\r\n"),
    CsvFormat("MYSQL", "\t", None, "\\", "\n", null_string="\\N"),
    CsvFormat("ORACLE", ",", '"', "\\", "\n", null_string="\\N", trim=True),
    CsvFormat("POSTGRESQL_CSV", ",", '"', None, "\n", quote_all_non_null=True),
    CsvFormat("POSTGRESQL_TEXT", "\t", None, "\\", "\n", null_string="\\N"),
)


def _format_key(name: str) -> str:
    return re.sub(r"[_\-\s]", "", name).upper()


_FORMATS_BY_KEY = {_format_key(f.name): f for f in _FORMATS}
CSV_FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in _FORMATS)


@cache
def _columns(report_type: ReportType) -> tuple[str, ...]:
    text = (importlib.resources.files("observer")
            .joinpath("schemas", "csv", f"{SCHEMA_NAME[report_type]}-csv-header.txt")
            .read_text("utf-8"))
    return tuple(c.strip() for c in text.split(",") if c.strip())


def csv_columns(report_type: ReportType) -> list[str]:
    """The CSV columns of a report type, in their normative order."""
    return list(_columns(report_type))


def group_by_type(reports: Iterable[Report]) -> dict[ReportType, list[Report]]:
    """Reports grouped by type; each group keeps the input order, groups are in first-seen order."""
    groups: dict[ReportType, list[Report]] = {}
    for report in reports:
        group = groups.get(report.type)
        if group is None:
            groups[report.type] = group = []
        group.append(report)
    return groups


def encode_csv(reports: Sequence[Report], csv_format: str | CsvFormat = "DEFAULT") -> str:
    """One CSV record per report (no header), each ending with the format's record separator.
    All reports must have the same type (use group_by_type); raises ValueError otherwise."""
    if not reports:
        return ""
    fmt = csv_format if isinstance(csv_format, CsvFormat) else CsvFormat.named(csv_format)
    report_type = reports[0].type
    columns = _columns(report_type)
    render = _renderer(fmt)
    delimiter, separator = fmt.delimiter, fmt.record_separator
    lines = []
    for report in reports:
        if report.type is not report_type:
            raise ValueError(f"encode_csv got {report.type.value} among {report_type.value} reports; "
                             "group them by type first")
        payload = report.payload
        lines.append(delimiter.join([render(payload.get(c)) for c in columns]))
        lines.append(separator)
    return "".join(lines)


def encode_csv_chunks(reports: Iterable[Report], csv_format: str | CsvFormat = "DEFAULT",
                      chunk_size: int = 100) -> list[tuple[ReportType, str]]:
    """Reports grouped by type and cut into chunks of at most ``chunk_size`` records, every chunk
    encoded with the same format."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    fmt = csv_format if isinstance(csv_format, CsvFormat) else CsvFormat.named(csv_format)
    out = []
    for report_type, group in group_by_type(reports).items():
        for start in range(0, len(group), chunk_size):
            out.append((report_type, encode_csv(group[start:start + chunk_size], fmt)))
    return out


@cache
def _renderer(fmt: CsvFormat) -> Callable[[Any], str]:
    """value -> its field text in ``fmt``."""
    null = fmt.null_string
    quote = fmt.quote
    trim = fmt.trim

    if quote is None:
        escape = fmt.escape or "\\"
        # commons-csv printWithEscapes: CR/LF become escape + r/n, delimiter and escape get escaped
        table = str.maketrans({
            "\r": escape + "r", "\n": escape + "n",
            fmt.delimiter: escape + fmt.delimiter, escape: escape + escape,
        })

        special = re.compile("[" + re.escape("\r\n" + fmt.delimiter + escape) + "]").search

        def field(text: str) -> str:
            return text.translate(table) if special(text) else text
    else:
        doubled = quote + quote
        inner_escape = fmt.escape if fmt.escape not in (None, quote) else None

        def quoted(text: str) -> str:
            # inside quotes a quote is doubled; a distinct escape character is escaped itself so
            # that escape-aware readers keep it
            if inner_escape is not None:
                text = text.replace(inner_escape, inner_escape + inner_escape)
            return quote + text.replace(quote, doubled) + quote

        if fmt.quote_all_non_null:
            field = quoted
        else:
            # QuoteMode.MINIMAL as commons-csv decides it: special characters anywhere, a first
            # character up to '#' or a last character up to space; also the empty string, so it
            # differs from null
            specials = fmt.delimiter + quote + (fmt.escape or "") + "\r\n"
            special = re.compile("[" + re.escape(specials) + "]").search

            def field(text: str) -> str:
                if not text or text[0] <= "#" or text[-1] <= " " or special(text):
                    return quoted(text)
                return text

    def render(value: Any) -> str:
        if value is None:
            return null
        cls = value.__class__
        if cls is str:
            return field(value.strip() if trim else value)
        if cls is bool:
            text = "true" if value else "false"
        elif cls is int or cls is float:
            text = repr(value)
        else:
            text = str(value)
        return field(text) if fmt.quote_all_non_null else text

    return render
