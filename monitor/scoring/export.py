"""Prometheus exposition of composite index scores.

Rendered to text once, when the scores are computed, like the KPI families in
``monitor.exporter``, so a scrape only concatenates bytes. Units without a
score (no data for any component) have no series at all: an absent score is
"not scored", never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from monitor.exporter import Family, family_lines, labels_text
from monitor.scoring.compute import UnitScore
from monitor.scoring.model import ScoringIndex

SCORE = Family("egov_score", "Composite index score of the unit (points earned, out of egov_score_max)")
SCORE_SCALED = Family("egov_score_scaled", "Composite index score of the unit scaled to 0-100 (score / max * 100)")
SCORE_MAX = Family("egov_score_max",
                   "Most points a unit can earn in the index: the points of the criteria the service measures")
SCORE_RANK = Family("egov_score_rank",
                    "Rank of the unit in the index among the scored units of its group (1 = best, ties share a rank)")
SCORE_RANK_SIZE = Family("egov_score_rank_size",
                         "Number of units ranked in the group (group is empty when the index ranks all units together)")
SCORE_CRITERION = Family("egov_score_criterion", "Points the unit earned on one criterion of the index")
SCORE_CRITERION_MAX = Family("egov_score_criterion_max", "Points a measured criterion of the index is worth")
SCORE_COMPLETE = Family("egov_score_complete",
                        "1 when every KPI of the index had data for the unit, 0 when some were missing "
                        "(they earned no points)")
INDEX_INFO = Family("egov_score_index_info", "Composite index: names and the KPI window it is computed over")


def _unit_pairs(score: UnitScore) -> list[tuple[str, str]]:
    return [("index", score.index), ("unit", score.unit), ("level", str(score.level)), ("group", score.group)]


def render_score_families(scores: Sequence[UnitScore], indices: Iterable[ScoringIndex]) -> str:
    """Text exposition of the scores of ``indices`` (every family, with HELP and TYPE)."""
    indices = list(indices)
    rank_within = {index.id: index.rank_within for index in indices}
    lines: list[str] = []

    def family(fam: Family, rows: Iterable[tuple[list[tuple[str, str]], float]]) -> None:
        lines.extend(family_lines(fam, ((labels_text(pairs), number) for pairs, number in rows)))

    pool_sizes: dict[tuple[str, str], int] = {}
    for s in scores:
        pool = s.group if rank_within.get(s.index, "group") == "group" else ""
        pool_sizes[(s.index, pool)] = s.rank_size

    family(SCORE, ((_unit_pairs(s), s.score) for s in scores))
    family(SCORE_SCALED, ((_unit_pairs(s), s.scaled) for s in scores))
    family(SCORE_MAX, (([("index", index.id)], index.max_score) for index in indices))
    family(SCORE_RANK, ((_unit_pairs(s), float(s.rank)) for s in scores))
    family(SCORE_RANK_SIZE, (([("index", i), ("group", g)], float(n)) for (i, g), n in pool_sizes.items()))
    family(SCORE_CRITERION, (([("index", s.index), ("criterion", c), *_unit_pairs(s)[1:]], points)
                             for s in scores for c, points in s.criteria.items()))
    family(SCORE_CRITERION_MAX, (([("index", index.id), ("criterion", c.id)], c.points)
                                 for index in indices for c in index.measured))
    family(SCORE_COMPLETE, ((_unit_pairs(s), 1.0 if s.complete else 0.0) for s in scores))
    family(INDEX_INFO, (([("index", index.id), ("name", index.vi), ("name_en", index.en or ""),
                          ("window", index.window)], 1.0) for index in indices))
    return "\n".join(lines) + "\n"
