"""``egovmon alerts …``: what is firing, silences, acknowledgements, the outbox,
and ``egovmon token new`` for the HTTP API. They work on the database, so they
act on a running service too."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from monitor.cli_common import fail, load, open_service
from monitor.timeutil import parse_duration

alerts_app = typer.Typer(help="Alerts: list, silence, acknowledge, the outbox.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for the state-changing HTTP endpoints.", no_args_is_help=True)
STATES = ("pending", "firing", "resolved", "inactive")


def _when(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"{name}: not a date-time (e.g. 2026-12-31T17:00+07:00): {text!r}", 2) from None
    if moment.tzinfo is None:
        raise fail(f"{name}: give the time zone too, e.g. {text}+07:00", 2)
    return moment.astimezone(UTC)


def _span(duration: str | None, until: str | None, now: datetime, *, required: bool) -> datetime | None:
    if duration and until:
        raise fail("give --for or --until, not both", 2)
    if duration:
        try:
            return now + parse_duration(duration)
        except ValueError as exc:
            raise fail(f"--for: {exc}", 2) from None
    if until:
        return _when(until, "--until")
    if required:
        raise fail("say how long: --for 2d or --until 2026-12-31T17:00+07:00", 2)
    return None


def _local(moment: datetime | None, tz: Any) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


@alerts_app.command("list")
def list_alerts(
    state: Annotated[list[str] | None, typer.Option(help="pending, firing, resolved, inactive (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Alerts by state (default: pending and firing), with what their recipients were told."""
    wanted = state or ["pending", "firing"]
    for s in wanted:
        if s not in STATES:
            raise fail(f"--state: one of {', '.join(STATES)}, got: {s!r}", 2)
    config = load()
    service = open_service(config)
    try:
        records = service.alerting.alerts.load(states=wanted)
    finally:
        service.close()
    for r in records:
        if as_json:
            typer.echo(json.dumps(alert_json(r), ensure_ascii=False))
            continue
        told = f"told {r.notified_state} {_local(r.notified_at, config.tz)}" if r.notified_state else "not told yet"
        extra = [f"escalation {r.escalation_level}"] if r.escalation_level else []
        if r.acked_by:
            extra.append(f"acked by {r.acked_by}")
        if r.inhibited_by:
            extra.append(f"inhibited: source {r.inhibited_by}")
        if r.flapping:
            extra.append("flapping")
        typer.echo(f"{r.id:>6} {r.kind:<6} {r.rule:<32} {r.unit or '-':<15} {r.state:<8} {r.status:<9} "
                   f"since {_local(r.fired_at or r.pending_since, config.tz)}  {told}"
                   + (f"  ({', '.join(extra)})" if extra else ""))
    if not as_json:
        typer.echo(f"{len(records)} alert(s) {'/'.join(wanted)}", err=True)


def alert_json(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("id", "kind", "rule", "unit", "kpi", "state", "status", "severity", "pending_since", "fired_at",
                 "resolved_at", "escalation_level", "notified_state", "notified_at", "notify_count", "acked_by",
                 "acked_at", "ack_reason", "ack_until", "flapping", "inhibited_by"):
        value = getattr(r, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


@alerts_app.command()
def silence(
    reason: Annotated[str, typer.Option(help="Why (shown to everyone who lists silences).")],
    rule: Annotated[str | None, typer.Option(help="Rule id.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit code.")] = None,
    subtree: Annotated[bool, typer.Option(help="Also every unit below --unit.")] = False,
    kpi: Annotated[str | None, typer.Option(help="KPI id.")] = None,
    source: Annotated[str | None, typer.Option(help="Source id: its own alert and the KPIs it feeds.")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="How long, e.g. 2h, 3d.")] = None,
    until: Annotated[str | None, typer.Option(help="End time with zone, e.g. 2026-12-31T17:00+07:00.")] = None,
    by: Annotated[str | None, typer.Option(help="Who sets it; default the login name.")] = None,
) -> None:
    """Mute the alerts that match every given matcher, until the end time."""
    config = load()
    service = open_service(config)
    try:
        now = service.clock.now()
        ends_at = _span(for_, until, now, required=True)
        assert ends_at is not None
        problems = unknown_matchers(service, rule=rule, unit=unit, kpi=kpi, source=source)
        if problems:
            raise fail("; ".join(problems), 2)
        try:
            made = service.alerting.silences.add(rule=rule, unit=unit, kpi=kpi, source=source, subtree=subtree,
                                                 starts_at=now, ends_at=ends_at, reason=reason,
                                                 created_by=by or getpass.getuser(), now=now)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
    finally:
        service.close()
    typer.echo(f"silence {made.id} until {_local(made.ends_at, config.tz)} ({config.timezone})")


def unknown_matchers(service: Any, *, rule: str | None, unit: str | None, kpi: str | None,
                     source: str | None) -> list[str]:
    problems = []
    if rule is not None and service.rules.get(rule) is None:
        problems.append(f"rule: no rule {rule!r}")
    if unit is not None and unit not in service.units:
        problems.append(f"unit: no unit {unit!r}")
    if kpi is not None and kpi not in service.catalog.kpis:
        problems.append(f"kpi: no KPI {kpi!r}")
    if source is not None and source not in {s.id for s in service.config.sources}:
        problems.append(f"source: no source {source!r}")
    return problems


@alerts_app.command()
def unsilence(silence_id: Annotated[int, typer.Argument(help="The silence's number.")]) -> None:
    """End a silence now."""
    service = open_service(load())
    try:
        ended = service.alerting.silences.expire(silence_id, service.clock.now())
    finally:
        service.close()
    if ended is None:
        raise fail(f"no silence {silence_id} (see `egovmon alerts silences`)", 1)
    typer.echo(f"silence {silence_id} ended")


@alerts_app.command()
def silences(all_: Annotated[bool, typer.Option("--all", help="Also ended ones.")] = False) -> None:
    """Silences in force (or all)."""
    config = load()
    service = open_service(config)
    try:
        found = service.alerting.silences.list(service.clock.now(), include_ended=all_)
    finally:
        service.close()
    for s in found:
        matchers = ", ".join(f"{k}={v}" for k, v in (("rule", s.rule), ("unit", s.unit), ("kpi", s.kpi),
                                                       ("source", s.source)) if v)
        typer.echo(f"{s.id:>5} {matchers}{' (+subtree)' if s.subtree else ''}  "
                   f"{_local(s.starts_at, config.tz)} → {_local(s.expired_at or s.ends_at, config.tz)}  "
                   f"by {s.created_by}: {s.reason}")
    typer.echo(f"{len(found)} silence(s)", err=True)


@alerts_app.command()
def ack(
    rule: Annotated[str, typer.Argument(help="Rule id.")],
    unit: Annotated[str, typer.Argument(help="Unit code.")],
    reason: Annotated[str, typer.Option(help="What is being done about it.")],
    for_: Annotated[str | None, typer.Option("--for", help="Stop reminders this long (default: until resolved).")]
    = None,
    until: Annotated[str | None, typer.Option(help="End time with zone.")] = None,
    by: Annotated[str | None, typer.Option(help="Who acknowledges; default the login name.")] = None,
) -> None:
    """Acknowledge a firing alert: no reminders or escalation until it resolves (or the end time)."""
    service = open_service(load())
    try:
        now = service.clock.now()
        ends = _span(for_, until, now, required=False)
        try:
            record = service.alerting.acknowledge(rule, unit, by=by or getpass.getuser(), reason=reason,
                                                  until=ends, now=now)
        except LookupError as exc:
            raise fail(str(exc.args[0]), 1) from None
    finally:
        service.close()
    typer.echo(f"alert {record.id} ({rule} / {unit}) acknowledged")


@alerts_app.command()
def outbox(
    status: Annotated[str | None, typer.Option(help="pending, sending, sent or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """Messages in the outbox and how their delivery went."""
    config = load()
    service = open_service(config)
    try:
        rows = service.alerting.outbox.list(status=status, limit=limit)
        stats = service.alerting.outbox.stats(service.clock.now())
    finally:
        service.close()
    for row in rows:
        typer.echo(f"{row.id:>6} {row.status:<8} {row.attempts:>2} attempt(s)  "
                   f"{_local(row.created_at, config.tz)}  {row.recipient:<32} {row.subject}"
                   + (f"\n{'':>8}last error: {row.last_error}" if row.last_error else ""))
    typer.echo(f"outbox: {describe_outbox(stats)}", err=True)


@alerts_app.command()
def send() -> None:
    """Compose what is due and deliver the outbox now (what the service does every alerts.tick)."""
    config = load()
    if not config.alerts.enabled:
        raise fail("alerts are off in this configuration (alerts.enabled: false); nothing to send", 1)
    service = open_service(config)

    async def main() -> None:
        try:
            await service.alert_cycle()
        finally:
            await service.aclose()

    asyncio.run(main())
    stats = service.alerting.outbox.stats(service.clock.now())
    typer.echo(f"outbox: {describe_outbox(stats)}")


def describe_outbox(stats: Any) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in stats.counts.items() if n) or "empty"
    oldest = f"; oldest waiting {stats.oldest_age_seconds:.0f}s" if stats.oldest_age_seconds else ""
    return counts + oldest


@token_app.command("new")
def token_new() -> None:
    """Print a new API token and the line to put in monitor.yaml (only the hash is stored)."""
    token = secrets.token_urlsafe(32)
    typer.echo(f"token (give it to the client; it is not stored anywhere): {token}")
    typer.echo(f"add to monitor.yaml under http.token_hashes: - sha256:{hashlib.sha256(token.encode()).hexdigest()}")


