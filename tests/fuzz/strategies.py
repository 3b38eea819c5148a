"""Hypothesis strategies shared by the fuzz tests: arbitrary YAML-able values,
mutations of a valid document, and mutations of raw bytes.

Mutations start from a document the loader accepts, so most examples get past
the YAML parser and reach the validation code, where the interesting bugs are.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import strategies as st

# Text without lone surrogates (YAML cannot write them), but with the rest of
# Unicode: Vietnamese letters, control characters, NUL, right-to-left marks.
TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 10**30, 10**300, -1, 0])
SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True), TEXT,
    st.sampled_from(["15m", "0s", "-1h", "1e400d", "99999999999999999999d", "nan", "2025-02-30",
                     "${NOPE}", "$${X}", "~", "../../etc/passwd", "sqlite:///x.db", "http://127.0.0.1:1",
                     "000.00.01.H99", "Tỉnh Sơn Hà", "\u202e", "a\x00b", "month", "ytd", "rolling_0d",
                     "document_management", "bearer", "Asia/Ho_Chi_Minh", "0 6 * * *"]),
    st.dates(),
)


# Bytes that break parsers: NUL, a BOM, half a UTF-8 sequence, YAML anchors and
# aliases, indentation and flow punctuation, quotes.
INSERTS = [b"\x00", b"\xff\xfe", b"\xc3", b"&a", b"*a", b"\t", b": ", b"- ", b"{", b"]", b"'", b'"', b"\xef\xbb\xbf",
           b"<!--", b"]]>", b"&lol;", b"PK\x03\x04"]


def values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Arbitrary nested mappings, lists and scalars."""
    return st.recursive(
        SCALARS,
        lambda children: st.one_of(st.lists(children, max_size=4),
                                   st.dictionaries(TEXT | st.sampled_from(["id", "kind", "url", "file"]),
                                                   children, max_size=4)),
        max_leaves=max_leaves)


def _containers(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every mapping and list in ``data`` (the places a mutation can hit)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(data, dict):
        out.append(path)
        for key, value in data.items():
            out.extend(_containers(value, (*path, key)))
    elif isinstance(data, list):
        out.append(path)
        for index, value in enumerate(data):
            out.extend(_containers(value, (*path, index)))
    return out


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn, document: Any, max_mutations: int = 4) -> Any:
    """``document`` after a few mutations: a key deleted, a value replaced by one of
    another type, an item duplicated (duplicate ids), a key renamed, a key added."""
    data = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_mutations))):
        places = _containers(data)
        if not places:
            return draw(values())
        target = _at(data, draw(st.sampled_from(places)))
        operation = draw(st.sampled_from(["delete", "replace", "duplicate", "rename", "add"]))
        if isinstance(target, dict):
            keys = list(target)
            if not keys or operation == "add":
                target[draw(TEXT)] = draw(values(4))
                continue
            key = draw(st.sampled_from(keys))
            if operation == "delete":
                del target[key]
            elif operation == "rename":
                target[draw(TEXT)] = target.pop(key)
            else:
                target[key] = draw(values(4)) if operation == "replace" else copy.deepcopy(target[key])
        else:
            if not target or operation == "add":
                target.append(draw(values(4)))
                continue
            index = draw(st.integers(0, len(target) - 1))
            if operation == "delete":
                del target[index]
            elif operation == "duplicate":
                target.append(copy.deepcopy(target[index]))
            else:
                target[index] = draw(values(4))
    return data


@st.composite
def mutated_bytes(draw: st.DrawFn, original: bytes, max_mutations: int = 6) -> bytes:
    """``original`` with a few bytes flipped, inserted, deleted, or the tail cut off."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, max_mutations))):
        operation = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if operation == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif operation == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(INSERTS))
        elif operation == "delete" and data:
            del data[at:at + draw(st.integers(1, 16))]
        elif operation == "truncate":
            del data[at:]
        elif operation == "splice" and data:
            start = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[start:start + draw(st.integers(1, 40))]
    return bytes(data)


def is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def billion_laughs(levels: int, width: int = 9) -> str:
    """The classic alias bomb: ``width ** levels`` leaves from a few hundred bytes."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"
