"""Jinja2 filters shared by the mail and report templates: each reads the
language from the template's context (``lang``), so a template says
``{{ value | percent }}`` and gets the reader's decimal mark and words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from jinja2 import pass_context
from jinja2.runtime import Context

Language = Literal["vi", "en"]


def context_language(ctx: Context) -> Language:
    lang: Language = ctx["lang"]
    return lang


def in_language(format_: Callable[[Any, Language], str]) -> Callable[[Context, Any], str]:
    """A filter: ``format_(value, the context's language)``."""
    @pass_context
    def apply(ctx: Context, value: Any) -> str:
        return format_(value, context_language(ctx))

    return apply


def name_in(table: dict[Language, dict[str, str]]) -> Callable[[Context, str], str]:
    """A filter naming a key (a status, a kind …) from ``table`` in the context's language."""
    @pass_context
    def name(ctx: Context, key: str) -> str:
        return table[context_language(ctx)].get(key, key)

    return name
