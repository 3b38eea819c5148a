"""Composite scores and rankings: weighted indices over KPIs, defined in YAML.

An index file (``rules/indices/*.yaml``, schema in ``model``) names criteria
worth points, each earned through KPI components; ``loader`` checks it against
the catalog and the unit tree, ``compute`` scores and ranks units from KPI
values, ``export`` renders the result for Prometheus.
"""

from monitor.scoring.compute import UnitScore, component_fraction, compute_scores, scored_units
from monitor.scoring.export import render_score_families
from monitor.scoring.loader import SHIPPED_INDICES_DIR, load_indices
from monitor.scoring.model import Citation, Component, Criterion, ScoredUnits, ScoringIndex

__all__ = [
    "SHIPPED_INDICES_DIR",
    "Citation",
    "Component",
    "Criterion",
    "ScoredUnits",
    "ScoringIndex",
    "UnitScore",
    "component_fraction",
    "compute_scores",
    "load_indices",
    "render_score_families",
    "scored_units",
]
