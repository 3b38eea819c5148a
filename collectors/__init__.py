"""Collectors: one module per source kind, listed in ``COLLECTORS``.

The table maps a kind to ``"module:ClassName"`` and is resolved lazily, so
reading the configuration does not import every collector. Adding a source
kind is a new module, a row here and a payload set under
``tests/collectors/payloads/<kind>/`` (the contract suite then runs over it).
"""

from __future__ import annotations

from importlib import import_module

from collectors.base import (
    CollectionResult,
    Collector,
    CollectorError,
    Credentials,
    MalformedPayload,
    Observation,
    Rejection,
    SourceAuthError,
    SourceRateLimited,
    SourceRequestError,
    SourceSettings,
    SourceTimeout,
    SourceUnavailable,
)

__all__ = [
    "COLLECTORS",
    "CollectionResult",
    "Collector",
    "CollectorError",
    "Credentials",
    "MalformedPayload",
    "Observation",
    "Rejection",
    "SourceAuthError",
    "SourceRateLimited",
    "SourceRequestError",
    "SourceSettings",
    "SourceTimeout",
    "SourceUnavailable",
    "collector_class",
]

COLLECTORS: dict[str, str] = {
    "document_management": "collectors.document_management:DocumentManagementCollector",
    "dvc_dossiers": "collectors.dvc_dossiers:DvcDossiersCollector",
    "edxml": "collectors.edxml:EdxmlCollector",
    "email_directory": "collectors.email_directory:EmailDirectoryCollector",
    "http_json": "collectors.http_json:HttpJsonCollector",
    "ldap_directory": "collectors.ldap_directory:LdapDirectoryCollector",
    "one_stop": "collectors.one_stop:OneStopCollector",
    "spreadsheet": "collectors.spreadsheet:SpreadsheetCollector",
    "sql": "collectors.sql:SqlCollector",
}


def collector_class(kind: str) -> type[Collector]:
    """The collector class for a source ``kind``, imported on first use."""
    try:
        target = COLLECTORS[kind]
    except KeyError:
        known = ", ".join(sorted(COLLECTORS))
        raise ValueError(f"unknown source kind {kind!r} (known kinds: {known})") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Collector) and cls.kind == kind):
        raise TypeError(f"COLLECTORS[{kind!r}] = {target!r} is not a Collector of kind {kind!r}")
    return cls
