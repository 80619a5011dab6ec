"""The ``schemaVersion`` query parameter: parsing rules of the reference observer (spec §1.1)."""

from __future__ import annotations

from observer.samples.model import SamplesError

SchemaVersion = tuple[int, int, int]

LATEST_VERSION: SchemaVersion = (2, 2, 0)
# exact matches only, as in the reference: 2.2.0 and every 2.1.x release
SUPPORTED_VERSIONS: tuple[SchemaVersion, ...] = (
    LATEST_VERSION,
    *((2, 1, patch) for patch in range(9, -1, -1)),
)


def format_version(version: SchemaVersion) -> str:
    return ".".join(str(part) for part in version)


SUPPORTED_VERSIONS_TEXT = ", ".join(format_version(v) for v in SUPPORTED_VERSIONS)


def parse_schema_version(text: str | None) -> SchemaVersion:
    """Parse ``MAJOR.MINOR.PATCH``: surrounding whitespace and one trailing dot are tolerated;
    exactly three non-negative integers are required and ``0.0.0`` is not a version."""
    if text is None:
        raise SamplesError("Not a valid schema version: None")
    stripped = text.strip()
    body = stripped[:-1] if stripped.endswith(".") else stripped
    parts = body.split(".")
    # str.isdigit() also accepts non-ASCII digits ("²"), which int() refuses or misreads
    if len(parts) != 3 or not all(part.isascii() and part.isdigit() for part in parts):
        raise SamplesError(f"Not a valid schema version: {text!r} (expected MAJOR.MINOR.PATCH)")
    major, minor, patch = (int(part) for part in parts)
    if major == minor == patch == 0:
        raise SamplesError(f"Not a valid schema version: {text!r}")
    return major, minor, patch


def supported_schema_version(text: str | None) -> SchemaVersion:
    """The version a frame declares; a missing or empty value means the latest (2.2.0)."""
    if text is None or not text.strip():
        return LATEST_VERSION
    version = parse_schema_version(text)
    if version not in SUPPORTED_VERSIONS:
        raise SamplesError(
            f"Not valid or not supported schema version: {text.strip()}. "
            f"Supported versions: {SUPPORTED_VERSIONS_TEXT}"
        )
    return version
