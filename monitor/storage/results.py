"""Stored results: target evaluations and composite index scores, one row per
(rule or index, unit, day). Re-evaluating a day replaces that day's rows, so
the tables hold a day-by-day history that can always be re-derived."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from monitor.storage.models import EvaluationRow, ScoreRow

EVALUATIONS: Table = EvaluationRow.__table__  # type: ignore[assignment]
SCORES: Table = ScoreRow.__table__  # type: ignore[assignment]
CHUNK = 2000
_EVALUATION_FIELDS = [c.name for c in EVALUATIONS.columns if c.name not in ("id",)]


class ResultStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def _upsert(self, table: Table, keys: list[str], rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        statement = self._insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=keys,
            set_={c: statement.excluded[c] for c in rows[0] if c not in keys})
        with self.engine.begin() as connection:
            for start in range(0, len(rows), CHUNK):
                connection.execute(statement, list(rows[start:start + CHUNK]))
        return len(rows)

    # ------------------------------------------------------------------ evaluations

    def save_evaluations(self, evaluations: Iterable[Any], evaluated_at: datetime) -> int:
        """Upsert on (rule, unit, as-of day), in one transaction."""
        rows = []
        for ev in evaluations:
            row = {name: getattr(ev, name) for name in _EVALUATION_FIELDS if name != "evaluated_at"}
            row["evaluated_at"] = evaluated_at
            rows.append(row)
        return self._upsert(EVALUATIONS, ["rule", "unit", "as_of_day"], rows)

    def load_evaluations(self, day: date, *, rules: Iterable[str] | None = None,
                         units: Iterable[str] | None = None) -> list[dict[str, Any]]:
        query = select(EVALUATIONS).where(EVALUATIONS.c.as_of_day == day).order_by(
            EVALUATIONS.c.rule, EVALUATIONS.c.unit)
        if rules is not None:
            query = query.where(EVALUATIONS.c.rule.in_(list(rules)))
        if units is not None:
            query = query.where(EVALUATIONS.c.unit.in_(list(units)))
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    # ------------------------------------------------------------------ scores

    def save_scores(self, scores: Iterable[Any], day: date, evaluated_at: datetime) -> int:
        rows = [{"index_id": s.index, "unit": s.unit, "as_of_day": day, "unit_group": s.group,
                 "level": str(s.level), "score": s.score, "max_score": s.max_score, "scaled": s.scaled,
                 "rank": s.rank, "rank_size": s.rank_size, "complete": s.complete,
                 "criteria": json.dumps(dict(s.criteria), ensure_ascii=False, sort_keys=True),
                 "missing": json.dumps(list(s.missing), ensure_ascii=False), "evaluated_at": evaluated_at}
                for s in scores]
        return self._upsert(SCORES, ["index_id", "unit", "as_of_day"], rows)

    def load_scores(self, day: date, *, index: str | None = None) -> list[dict[str, Any]]:
        query = select(SCORES).where(SCORES.c.as_of_day == day).order_by(
            SCORES.c.index_id, SCORES.c.unit_group, SCORES.c.rank)
        if index is not None:
            query = query.where(SCORES.c.index_id == index)
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        for row in rows:
            row["criteria"] = json.loads(row["criteria"])
            row["missing"] = json.loads(row["missing"])
        return rows
