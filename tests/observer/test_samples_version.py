"""schemaVersion parsing (the reference's SchemaVersionTest cases) and the supported set."""

import pytest

from observer.samples import SamplesError, parse_schema_version
from observer.samples.version import SUPPORTED_VERSIONS, supported_schema_version


@pytest.mark.parametrize("text", ["1.2.3", "\t 1.2.3", "1.2.3\t\n", "1.2.3.\t", " \t 1.2.3. \t "])
def test_parses_with_surrounding_whitespace_and_one_trailing_dot(text: str) -> None:
    assert parse_schema_version(text) == (1, 2, 3)


@pytest.mark.parametrize(
    "text", [None, "", "1.2", "1.2.3.4", "-1.2.3", "1.-2.3", "0.0.0", "1.2.3..", "a.b.c", "1. 2.3", "1.2.²"]
)
def test_rejects_malformed_versions(text: str | None) -> None:
    with pytest.raises(SamplesError, match="schema version"):
        parse_schema_version(text)


def test_versions_compare_by_numeric_parts() -> None:
    assert parse_schema_version("2.1.10") > parse_schema_version("2.1.9")
    assert parse_schema_version("2.2.0") > parse_schema_version("2.1.9")
    assert parse_schema_version("1.10.0") > parse_schema_version("1.9.99")
    assert parse_schema_version(" 2.2.0.") == parse_schema_version("2.2.0")
    assert parse_schema_version("2.2.0") != parse_schema_version("2.2.1")


def test_supported_versions_are_2_2_0_and_all_of_2_1() -> None:
    assert set(SUPPORTED_VERSIONS) == {(2, 2, 0)} | {(2, 1, patch) for patch in range(10)}


@pytest.mark.parametrize("text", [None, "", "  "])
def test_missing_version_means_latest(text: str | None) -> None:
    assert supported_schema_version(text) == (2, 2, 0)


@pytest.mark.parametrize("text", ["2.2.1", "2.0.4", "3.0.0", "2.1.10", "1.0.0"])
def test_unsupported_version_names_the_supported_ones(text: str) -> None:
    with pytest.raises(SamplesError) as info:
        supported_schema_version(text)
    message = str(info.value)
    assert message.startswith(f"Not valid or not supported schema version: {text}.")
    assert "Supported versions: 2.2.0, 2.1.9" in message
