"""A JSONPath subset for mapping JSON answers in configuration.

Supported: ``$`` (the document), ``.name``, ``['name with spaces']`` (or double
quotes), ``[n]`` (a list index, negative from the end) and ``[*]`` / ``.*``
(every element). A path may leave out the leading ``$``: ``maDonVi`` and
``soVanBan.di`` are read from the record they apply to. Filters, slices and
recursive descent are left out on purpose: a mapping that needs them is
better served by a source-side view than by a query language in YAML.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

WILDCARD = "*"
_NAME = re.compile(r"[^.\[\]\s'\"]+")
_INDEX = re.compile(r"\[(-?\d+)\]")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")

Step = str | int  # a key, a list index, or WILDCARD


class Missing:
    """What a path finds where the document has nothing (unlike JSON ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


@dataclass(frozen=True)
class JsonPath:
    text: str
    steps: tuple[Step, ...]

    @property
    def is_single(self) -> bool:
        """True when the path names at most one value (no wildcard)."""
        return WILDCARD not in self.steps

    def find(self, document: Any) -> list[Any]:
        """Every value the path reaches, in document order."""
        return list(_walk(document, self.steps))

    def first(self, document: Any) -> Any:
        """The value the path reaches, or ``MISSING``."""
        return next(_walk(document, self.steps), MISSING)

    def __str__(self) -> str:
        return self.text


def _walk(value: Any, steps: tuple[Step, ...]) -> Iterator[Any]:
    if not steps:
        yield value
        return
    step, rest = steps[0], steps[1:]
    if step == WILDCARD:
        children = value if isinstance(value, list) else (
            list(value.values()) if isinstance(value, dict) else [])
        for child in children:
            yield from _walk(child, rest)
    elif isinstance(step, int):
        if isinstance(value, list) and -len(value) <= step < len(value):
            yield from _walk(value[step], rest)
    elif isinstance(value, dict) and step in value:
        yield from _walk(value[step], rest)


@lru_cache(maxsize=512)
def parse_path(text: str) -> JsonPath:
    """The path written ``text``; ``ValueError`` naming the position of a mistake."""
    source = text.strip()
    if not source:
        raise ValueError("empty path (write e.g. $.data or maDonVi)")
    steps: list[Step] = []
    pos = 1 if source.startswith("$") else 0
    if pos == 0 and not source.startswith("["):  # a bare leading name, as in ``maDonVi.ten``
        match = _NAME.match(source)
        if not match:
            raise ValueError(f"path {text!r}: expected a name or $ at position 0")
        steps.append(WILDCARD if match.group() == WILDCARD else match.group())
        pos = match.end()
    while pos < len(source):
        pos = _step(text, source, pos, steps)
    return JsonPath(source, tuple(steps))


def _step(text: str, source: str, pos: int, steps: list[Step]) -> int:
    """Parse the step at ``pos`` into ``steps``; return where the next one starts."""
    if source[pos] == ".":
        match = _NAME.match(source, pos + 1)
        if not match:
            raise ValueError(f"path {text!r}: expected a name after '.' at position {pos}")
        steps.append(WILDCARD if match.group() == WILDCARD else match.group())
        return match.end()
    if source.startswith("[*]", pos):
        steps.append(WILDCARD)
        return pos + 3
    index = _INDEX.match(source, pos)
    if index:
        steps.append(int(index.group(1)))
        return index.end()
    quoted = _QUOTED.match(source, pos)
    if quoted:
        raw = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
        steps.append(re.sub(r"\\(.)", r"\1", raw))
        return quoted.end()
    raise ValueError(f"path {text!r}: unexpected {source[pos:pos + 10]!r} at position {pos} "
                     "(supported: $, .name, ['name'], [n], [*])")
