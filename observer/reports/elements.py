"""Safe access to a sample's element lists (monitors may send anything)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observer.reports.schema import ISSUES


def elements(sample: Mapping[str, Any], key: str, schema: str) -> list[dict[str, Any]]:
    """The objects of ``sample[key]``; a non-list and non-object items are skipped (counted under
    ``schema``)."""
    items = sample.get(key)
    if not items:
        return []
    if items.__class__ is not list:
        ISSUES.report_dropped(schema, f"{key} is not a list")
        return []
    for el in items:
        if el.__class__ is not dict:
            ISSUES.report_dropped(schema, f"{key} has an element that is not an object")
            return [el for el in items if el.__class__ is dict]
    return items
