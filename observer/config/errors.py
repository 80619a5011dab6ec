"""The one exception the configuration loader raises."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` holds one line per problem, each
    starting with the full key path (``observer.repository.callMaxIdleTimeInS: must be >= 3, got 1``)
    or the file it concerns; all problems found are reported at once."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems: tuple[str, ...] = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("\n".join(self.problems))
