"""Composite scores: the arithmetic by hand, ranks within groups, refused index
files, the shipped indices on the simulated province, and the exposition."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.catalog import Catalog, Kpi, load_catalog
from monitor.errors import ConfigError
from monitor.kpi import KpiValue
from monitor.scoring import (
    SHIPPED_INDICES_DIR,
    ScoringIndex,
    UnitScore,
    component_fraction,
    compute_scores,
    load_indices,
    render_score_families,
)
from monitor.scoring.model import Component
from monitor.simulators.province import ProvinceModel
from monitor.units import Level, Unit, UnitTree, build_tree
from tests.support.components import promtool_check_metrics

DAY = date(2026, 11, 22)
PROVINCE = "000.00.00.H99"
D1, D2, D3, D4 = "000.00.01.H99", "000.00.02.H99", "000.00.03.H99", "000.00.04.H99"
AGENCY = "000.01.01.H99"
DISTRICT = "000.00.41.H99"
X1, X2, X3 = "000.01.70.H99", "000.02.70.H99", "000.03.70.H99"
ONLINE, ONTIME, DIGITISED = "online_dossier_rate", "dossier_ontime_rate", "dossier_digitization_rate"


def unit(code: str, level: Level, group: str, parent: str | None = PROVINCE, **extra: object) -> Unit:
    return Unit.model_validate({"code": code, "name": f"Unit {code}", "level": level, "group": group,
                                "parent": parent, **extra})


def tree() -> UnitTree:
    return build_tree([
        unit(PROVINCE, Level.province, "tinh", None),
        *(unit(code, Level.department, "so_nganh") for code in (D1, D2, D3, D4)),
        unit(AGENCY, Level.agency, "don_vi_truc_thuoc", D1),
        unit(DISTRICT, Level.district, "huyen", valid_to=date(2025, 6, 30)),
        *(unit(code, Level.commune, "xa", valid_from=date(2025, 7, 1)) for code in (X1, X2, X3)),
    ], {}, "<test tree>")


# 30 points from two weighted components, 20 from one, 50 not measured: max_score 50.
INDEX = """\
version: 1
id: test-index
vi: "Chỉ số thử"
citation: {instrument: "QĐ 1/QĐ-TEST", date: 2024-01-01, title: "Test methodology"}
window: ytd
units:
  groups: [so_nganh, huyen, xa]
rank_within: {rank_within}
max: 100
criteria:
  - id: a
    vi: "Nhóm A"
    points: 30
    components:
      - {kpi: online_dossier_rate, weight: 2, full_at: 0.5}
      - {kpi: dossier_ontime_rate, full_at: "100%"}
  - id: b
    vi: "Nhóm B"
    points: 20
    components:
      - {kpi: dossier_digitization_rate, full_at: 0.8}
  - id: c
    vi: "Nhóm C"
    points: 50
    measured: false
    note: "no data"
"""


def write(directory: Path, text: str, name: str = "index.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def load_one(tmp_path: Path, rank_within: str = "group") -> ScoringIndex:
    (index,) = load_indices([write(tmp_path, INDEX.replace("{rank_within}", rank_within))], load_catalog(), tree())
    return index


def kv(kpi: str, code: str, numerator: float, denominator: float = 100, window: str = "ytd") -> KpiValue:
    return KpiValue(kpi, code, window, numerator, denominator, 1)


def by_unit(scores: list[UnitScore]) -> dict[str, UnitScore]:
    return {s.unit: s for s in scores}


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(("direction", "full_at", "value", "fraction"), [
    ("up", 0.5, 0.4, 0.8),  # linear below the threshold
    ("up", 0.8, 0.9, 1.0),  # capped above it
    ("up", 1.0, 0.0, 0.0),
    ("up", 0.5, 1.2, 1.0),  # bad data earns no more than the share
    ("down", 0.2, 0.6, 0.5),  # (1 − 0.6) / (1 − 0.2)
    ("down", 0.2, 0.1, 1.0),  # at or below full_at: full
    ("down", 0.2, 1.0, 0.0),
    ("down", 1.0, 0.7, 1.0),  # full_at 1: never divides by zero
])
def test_component_fraction(direction: str, full_at: float, value: float, fraction: float) -> None:
    component = Component.model_validate({"kpi": "k", "full_at": full_at, "direction": direction})
    assert component_fraction(component, value) == pytest.approx(fraction)


def test_unresolved_direction_is_refused() -> None:
    with pytest.raises(ValueError, match="load_indices"):
        component_fraction(Component(kpi="k", full_at=0.5), 0.3)


def test_hand_computed_score(tmp_path: Path) -> None:
    index = load_one(tmp_path)
    scores = compute_scores(index, [kv(ONLINE, D1, 40), kv(ONTIME, D1, 90), kv(DIGITISED, D1, 60)], tree(), DAY)
    (score,) = scores
    # a: online share 30×2/3 = 20, 0.4/0.5 → 16; on-time share 10, 0.9/1.0 → 9.  b: 20 × 0.6/0.8 = 15.
    assert score.criteria == pytest.approx({"a": 25.0, "b": 15.0})
    assert score.score == pytest.approx(40.0)
    assert score.max_score == 50.0  # c is not measured
    assert score.scaled == pytest.approx(80.0)
    assert (score.rank, score.rank_size, score.complete, score.missing) == (1, 1, True, ())
    assert (score.index, score.group, score.level) == ("test-index", "so_nganh", Level.department)


def test_ties_share_a_rank_and_the_next_rank_skips(tmp_path: Path) -> None:
    index = load_one(tmp_path)
    values = [
        kv(ONLINE, D1, 40), kv(ONTIME, D1, 90), kv(DIGITISED, D1, 60),  # 16 + 9 + 15 = 40
        kv(ONLINE, D2, 50), kv(ONTIME, D2, 50), kv(DIGITISED, D2, 60),  # 20 + 5 + 15 = 40, another way
        kv(ONLINE, D3, 60), kv(ONTIME, D3, 100), kv(DIGITISED, D3, 80),  # 20 + 10 + 20 = 50
        kv(ONLINE, D4, 10), kv(ONTIME, D4, 10), kv(DIGITISED, D4, 8),  # 4 + 1 + 2 = 7
    ]
    scores = by_unit(compute_scores(index, values, tree(), DAY))
    assert {code: s.rank for code, s in scores.items()} == {D3: 1, D1: 2, D2: 2, D4: 4}
    assert {s.rank_size for s in scores.values()} == {4}
    assert scores[D4].score == pytest.approx(7.0)


def test_missing_component_costs_its_points_and_marks_the_score_incomplete(tmp_path: Path) -> None:
    index = load_one(tmp_path)
    values = [kv(ONLINE, D1, 40), kv(ONTIME, D1, 90),  # no digitisation figure at all
              kv(ONLINE, D2, 40), kv(ONTIME, D2, 90), kv(DIGITISED, D2, 0, 0)]  # 0/0: no data either
    scores = by_unit(compute_scores(index, values, tree(), DAY))
    for code in (D1, D2):
        assert scores[code].score == pytest.approx(25.0)
        assert scores[code].criteria == pytest.approx({"a": 25.0, "b": 0.0})
        assert not scores[code].complete
        assert scores[code].missing == (DIGITISED,)
        assert scores[code].rank == 1


def test_a_unit_without_any_data_gets_no_score_and_no_rank(tmp_path: Path) -> None:
    index = load_one(tmp_path)
    values = [kv(ONLINE, D1, 40), kv(ONTIME, D1, 90), kv(DIGITISED, D1, 60),
              kv(ONLINE, D2, 0, 0), kv(ONTIME, D2, 0, 0),  # only empty denominators
              kv(ONLINE, D3, 50, window="month"),  # another window than the index's
              kv("outgoing_docs_electronic_rate", D4, 90)]  # a KPI the index does not read
    scores = compute_scores(index, values, tree(), DAY)
    assert [(s.unit, s.rank, s.rank_size) for s in scores] == [(D1, 1, 1)]


def test_ranks_are_kept_within_each_group(tmp_path: Path) -> None:
    index = load_one(tmp_path)
    values = [kv(k, code, pct) for code, pct in [(D1, 50), (D2, 70), (X1, 20), (X2, 90), (X3, 60),
                                                 (AGENCY, 100), (PROVINCE, 100), (DISTRICT, 100)]
              for k in (ONLINE, ONTIME, DIGITISED)]
    scores = compute_scores(index, values, tree(), DAY)
    # The agency and the province are not in the index's groups; the district ended in 2025.
    assert [(s.unit, s.group, s.rank, s.rank_size) for s in scores] == [
        (D2, "so_nganh", 1, 2), (D1, "so_nganh", 2, 2),
        (X2, "xa", 1, 3), (X3, "xa", 2, 3), (X1, "xa", 3, 3)]
    # Before the reform the district is scored, alone in its group; the new communes did not exist yet.
    before = compute_scores(index, values, tree(), date(2025, 3, 1))
    assert [(s.unit, s.rank, s.rank_size) for s in before if s.group != "so_nganh"] == [(DISTRICT, 1, 1)]


def test_rank_within_all_ranks_across_groups(tmp_path: Path) -> None:
    index = load_one(tmp_path, rank_within="all")
    values = [kv(k, code, pct) for code, pct in [(D1, 50), (X1, 60), (X2, 40)] for k in (ONLINE, ONTIME, DIGITISED)]
    scores = by_unit(compute_scores(index, values, tree(), DAY))
    assert {code: (s.rank, s.rank_size) for code, s in scores.items()} == {X1: (1, 3), D1: (2, 3), X2: (3, 3)}


def test_down_kpis_earn_below_their_threshold(tmp_path: Path) -> None:
    shipped = load_catalog()
    late = Kpi(vi="Tỷ lệ hồ sơ trễ hạn", en="Late dossiers", numerator=("dossiers_resolved_ontime",),
               denominator=("dossiers_resolved_total",), direction="down", window="month")
    catalog = Catalog(shipped.measures, {**shipped.kpis, "late_rate": late})
    text = (INDEX.replace("{rank_within}", "group").replace("online_dossier_rate, weight: 2, full_at: 0.5",
                                                            "late_rate, weight: 2, full_at: 0.1"))
    (index,) = load_indices([write(tmp_path, text)], catalog, tree())
    scores = compute_scores(index, [kv("late_rate", D1, 55), kv(ONTIME, D1, 90), kv(DIGITISED, D1, 60)], tree(), DAY)
    # late share 20 × (1 − 0.55) / (1 − 0.1) = 10; on-time 9; digitisation 15.
    assert scores[0].score == pytest.approx(34.0)


# --------------------------------------------------------------------------- refused files


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def refused(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_indices([path], load_catalog(), tree())
    return [str(p) for p in caught.value.problems]


BASE = INDEX.replace("{rank_within}", "group")


def test_unknown_kpi_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    text = BASE.replace("kpi: dossier_digitization_rate", "kpi: dossier_digitisation_rate")
    (problem,) = refused(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'index.yaml'}:{line_of(text, 'dossier_digitisation_rate')}: "
                              "criteria[1].components[0].kpi: unknown KPI 'dossier_digitisation_rate'")
    assert "did you mean 'dossier_digitization_rate'?" in problem


def test_points_not_adding_up_to_max_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("points: 50", "points: 40")
    (problem,) = refused(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'index.yaml'}:{line_of(text, 'max: 100')}: max: ")
    assert "add up to 90 (30 + 20 + 40), not the stated max 100" in problem


def test_unknown_group_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("groups: [so_nganh, huyen, xa]", "groups: [so_nganh, huyen, xã]")
    problems = refused(tmp_path, text)
    # "xã" fails the slug pattern before the tree is consulted; a well-formed unknown slug reaches the tree.
    assert problems[0].startswith(f"{tmp_path / 'index.yaml'}:{line_of(text, 'groups:')}: units.groups[2]: ")
    text = BASE.replace("groups: [so_nganh, huyen, xa]", "groups: [so_nganh, huyen, xa_phuong]")
    (problem,) = refused(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'index.yaml'}:{line_of(text, 'groups:')}: units.groups[2]: "
                              "unknown group 'xa_phuong'")


def test_duplicate_index_ids_across_files_are_refused(tmp_path: Path) -> None:
    first, second = write(tmp_path, BASE, "a.yaml"), write(tmp_path, BASE, "b.yaml")
    with pytest.raises(ConfigError) as caught:
        load_indices([tmp_path], load_catalog(), tree())
    (problem,) = [str(p) for p in caught.value.problems]
    id_line = line_of(BASE, "id: test-index")
    assert problem.startswith(f"{second}:{id_line}: id: index 'test-index': duplicate id, "
                              f"first defined at {first}:{id_line}")


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ('note: "no data"', "", "criteria[2]", "'measured: false' needs a 'note'"),
    ("full_at: 0.8", "full_at: 80", "criteria[1].components[0].full_at", "write 0.8 or '80%'"),
    ("window: ytd", "window: year", "window", "unknown window 'year'"),
    ("id: b\n", "id: a\n", "criteria[1].id", "criterion 'a' is defined twice"),
    ("weight: 2, full_at: 0.5", "weight: 2, full_at: 0", "criteria[0].components[0].full_at",
     "full_at 0 would give full points for nothing"),
])
def test_other_mistakes_name_the_line_and_field(tmp_path: Path, old: str, new: str, field: str,
                                                message: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new)
    problems = refused(tmp_path, text)
    assert any(f": {field}: " in p and message in p for p in problems), problems
    assert all(p.startswith(f"{tmp_path / 'index.yaml'}:") and p.split(":")[1].isdigit() for p in problems)


# --------------------------------------------------------------------------- shipped indices, simulated province


def test_shipped_indices_load_against_the_simulated_province() -> None:
    indices = {i.id: i for i in load_indices([SHIPPED_INDICES_DIR], load_catalog(), ProvinceModel().unit_tree())}
    assert set(indices) == {"ict-ranking", "index-766-subset"}
    assert indices["ict-ranking"].max_score == 75  # 3 measured criteria of 25
    assert indices["index-766-subset"].max_score == 64  # groups 2, 3, 4: 20 + 22 + 22
    assert [c.points for c in indices["index-766-subset"].criteria] == [18, 20, 22, 22, 18]


def test_shipped_indices_leave_out_groups_a_province_does_not_have() -> None:
    """A province after the 2025 reform with no districts, and no departments in its units file:
    the shipped indices still load (a service must start on the defaults), scoring only the
    groups it has; the same index as the operator's own file is refused."""
    communes_only = build_tree([
        unit(PROVINCE, Level.province, "tinh", None),
        *(unit(code, Level.commune, "xa", valid_from=date(2025, 7, 1)) for code in (X1, X2, X3)),
    ], {}, "<post-reform tree>")
    indices = {i.id: i for i in load_indices([SHIPPED_INDICES_DIR], load_catalog(), communes_only, shipped=True)}
    assert indices["ict-ranking"].units.groups == ("xa",)
    assert indices["index-766-subset"].units.groups == ("tinh", "xa")
    only_departments = build_tree([unit(PROVINCE, Level.province, "tinh", None),
                                   unit(D1, Level.department, "so_dept")], {}, "<odd tree>")
    skipped = load_indices([SHIPPED_INDICES_DIR], load_catalog(), only_departments, shipped=True)
    assert [i.id for i in skipped] == ["index-766-subset"]  # ict-ranking has none of its groups: skipped
    with pytest.raises(ConfigError, match="unknown group 'huyen'"):
        load_indices([SHIPPED_INDICES_DIR], load_catalog(), communes_only)


def test_simulated_province_is_ranked_within_groups_and_exports_cleanly() -> None:
    units = ProvinceModel().unit_tree()
    indices = load_indices([SHIPPED_INDICES_DIR], load_catalog(), units)
    rng = random.Random(766)
    values = []
    for u in units.valid_on(DAY):
        for kpi in {k for index in indices for k in index.kpis}:
            if rng.random() < 0.1:
                continue  # some units do not report some KPIs
            total = rng.randint(0, 400)  # 0 now and then: a KPI without data
            values.append(KpiValue(kpi, u.code, "ytd", rng.randint(0, total), total, 1))
    all_scores = []
    for index in indices:
        scores = compute_scores(index, values, units, DAY)
        all_scores.extend(scores)
        by_group: dict[str, list[UnitScore]] = defaultdict(list)
        for s in scores:
            unit_now = units.get(s.unit, DAY)
            assert unit_now is not None and unit_now.group == s.group
            assert index.units.matches(unit_now)
            by_group[s.group].append(s)
        expected_groups = {"ict-ranking": {"so_nganh", "xa"}, "index-766-subset": {"tinh", "so_nganh", "xa"}}
        assert set(by_group) == expected_groups[index.id]  # no districts on 2026-11-22, no agencies
        for group, members in by_group.items():
            ordered = sorted(members, key=lambda s: -s.score)
            assert sorted(s.rank for s in members) == list(range(1, len(members) + 1)), group  # no ties drawn
            assert [s.rank for s in ordered] == list(range(1, len(members) + 1))
            assert {s.rank_size for s in members} == {len(members)}
            assert all(0 <= s.scaled <= 100 and s.max_score == index.max_score for s in members)
        assert any(not s.complete for s in scores) and any(s.complete for s in scores)
    text = render_score_families(all_scores, indices)
    ok, output = promtool_check_metrics(text)
    assert ok, output


# --------------------------------------------------------------------------- exposition


def test_exposition_values_and_labels(tmp_path: Path) -> None:
    index = load_one(tmp_path)
    values = [kv(ONLINE, D1, 40), kv(ONTIME, D1, 90),  # incomplete: no digitisation
              kv(ONLINE, X1, 50), kv(ONTIME, X1, 100), kv(DIGITISED, X1, 80)]
    text = render_score_families(compute_scores(index, values, tree(), DAY), [index])
    parsed = {(s.name, frozenset(s.labels.items())): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}

    def key(**labels: str) -> frozenset[tuple[str, str]]:
        return frozenset(labels.items())

    d1 = {"index": "test-index", "unit": D1, "level": "department", "group": "so_nganh"}
    x1 = {"index": "test-index", "unit": X1, "level": "commune", "group": "xa"}
    assert parsed[("egov_score", key(**d1))] == pytest.approx(25.0)
    assert parsed[("egov_score_scaled", key(**d1))] == pytest.approx(50.0)
    assert parsed[("egov_score_complete", key(**d1))] == 0
    assert parsed[("egov_score_complete", key(**x1))] == 1
    assert parsed[("egov_score", key(**x1))] == pytest.approx(50.0)
    assert parsed[("egov_score_rank", key(**x1))] == 1
    assert parsed[("egov_score_criterion", key(criterion="b", **d1))] == 0
    assert parsed[("egov_score_criterion", key(criterion="a", **x1))] == pytest.approx(30.0)
    assert parsed[("egov_score_max", key(index="test-index"))] == 50
    assert parsed[("egov_score_criterion_max", key(index="test-index", criterion="a"))] == 30
    assert ("egov_score_criterion_max", key(index="test-index", criterion="c")) not in parsed
    assert parsed[("egov_score_rank_size", key(index="test-index", group="xa"))] == 1
    assert not any(dict(labels).get("unit") == D2 for _, labels in parsed)  # no data: no series
    for name in ("egov_score", "egov_score_rank", "egov_score_complete"):
        assert f"# HELP {name} " in text
