"""Retention: keep the database's size bounded without changing any KPI.

Day observations older than ``retention.raw_days`` are rolled up into month
observations, one whole month per transaction (flows summed, stocks the month's
latest value — the same arithmetic the KPI engine applies to a month window, so
month, quarter and year values stay exactly what they were). Only months that end
before the horizon *and* before every source's watermark are touched: a period
the collector may still fetch again is never rolled up, so a day cannot come back
beside its month and be counted twice. Operational tables (rejections, finished
collection runs, alert transitions, sent mail) are pruned past their own horizons,
in small batches.

Every step is idempotent and each batch is atomic: a run killed half-way leaves
each month either as days or as one month row, and the next run finishes the job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from monitor.catalog import Catalog
from monitor.config import RetentionConfig
from monitor.storage.store import Store
from monitor.timeutil import add_months, local_date, local_midnight

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionSummary:
    months_rolled_up: int = 0
    observations_removed: int = 0
    observations_written: int = 0
    rejections: int = 0
    collection_runs: int = 0
    alert_transitions: int = 0
    outbox: int = 0


def month_bounds(first: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """A local calendar month as the half-open UTC interval the KPI windows use."""
    return local_midnight(first, tz), local_midnight(add_months(first, 1), tz)


def months_to_roll_up(periods: list[tuple[datetime, datetime]], cutoff: datetime, tz: tzinfo) -> list[date]:
    """First days of the local months that end by ``cutoff`` and hold a period
    shorter than the month (days, weeks) lying wholly inside it, oldest first."""
    months: set[date] = set()
    for start, end in periods:
        first = local_date(start, tz).replace(day=1)
        month_start, month_end = month_bounds(first, tz)
        if month_end <= cutoff and month_start <= start and end <= month_end and (start, end) != (month_start,
                                                                                                   month_end):
            months.add(first)
    return sorted(months)


def roll_up_cutoff(store: Store, sources: list[str], now: datetime, raw_days: int, tz: tzinfo) -> datetime:
    """The instant before which whole months may be rolled up: the horizon, but never
    past a source's watermark (what is after it will be collected again)."""
    cutoff = local_midnight(local_date(now, tz) - timedelta(days=raw_days), tz)
    for source in sources:
        watermark = store.watermark(source)
        if watermark is not None:
            cutoff = min(cutoff, watermark)
    return cutoff


def apply_retention(store: Store, catalog: Catalog, config: RetentionConfig, now: datetime, tz: tzinfo,
                    sources: list[str]) -> RetentionSummary:
    """One retention pass (the daily job, or ``run_once`` in tests and the soak)."""
    kinds = {measure_id: measure.kind for measure_id, measure in catalog.measures.items()}
    cutoff = roll_up_cutoff(store, sources, now, config.raw_days, tz)
    months = months_to_roll_up(store.observation_periods(cutoff), cutoff, tz)
    removed = written = 0
    for first in months:
        start, end = month_bounds(first, tz)
        gone, new = store.roll_up(start, end, kinds)
        removed += gone
        written += new
    day = timedelta(days=1)
    summary = RetentionSummary(
        months_rolled_up=len(months), observations_removed=removed, observations_written=written,
        rejections=store.prune_rejections(now - config.rejections_days * day, config.batch_size),
        collection_runs=store.prune_collection_runs(now - config.collection_runs_days * day, config.batch_size),
        alert_transitions=store.prune_alert_transitions(now - config.alert_transitions_days * day,
                                                        config.batch_size),
        outbox=store.prune_outbox(now - config.outbox_days * day, config.batch_size),
    )
    if summary != RetentionSummary():
        log.info("retention: %s", summary)
    return summary
