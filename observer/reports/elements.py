"""Safe access to a sample's element lists (monitors may send anything)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observer.reports.schema import ISSUES


def elements(sample: Mapping[str, Any], key: str, schema: str, *, count: bool = True) -> list[dict[str, Any]]:
    """The objects of ``sample[key]``; a non-list and non-object items are skipped (counted under
    ``schema`` unless ``count`` is false)."""
    items = sample.get(key)
    if not items:
        return []
    if items.__class__ is not list:
        if count:
            ISSUES.report_dropped(schema, f"{key} is not a list")
        return []
    for el in items:
        if el.__class__ is not dict:
            if count:
                ISSUES.report_dropped(schema, f"{key} has an element that is not an object")
            return [el for el in items if el.__class__ is dict]
    return items
