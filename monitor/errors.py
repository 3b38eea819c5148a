"""The project's error tree for configuration and data files.

Collectors have their own tree in ``collectors.base``; both end up as a clear
message to the operator that names the file, the line and the field.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a user-written file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class ConfigError(Exception):
    """A user-written file (config, units, catalog, rules) is not valid.

    Carries every problem found, not only the first, so one run of
    ``egovmon config check`` tells the operator everything to fix.
    """

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    @classmethod
    def single(cls, file: str, message: str, *, line: int | None = None, field: str = "") -> ConfigError:
        return cls([Problem(file, line, field, message)])


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
