"""The effective-dated unit tree: loading, validation, the 2025 reform."""

from datetime import date
from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.units import Level, load_units

TREE = """\
version: 1
groups:
  xa: {vi: "Xã, phường", en: "Communes"}
units:
  - {code: 000.00.00.H99, name: "UBND tỉnh Sơn Hà", level: province, group: tinh}
  - {code: 000.00.01.H99, name: "Sở Tư pháp", level: department, group: so_nganh, parent: 000.00.00.H99,
     head: {name: "Trần Thị Bình", email: "binh@sonha.gov.vn"}, staff_count: 80}
  - {code: 000.00.41.H99, name: "UBND huyện Đồng Văn", level: district, group: huyen,
     parent: 000.00.00.H99, valid_to: 2025-06-30}
  - {code: 000.01.41.H99, name: "UBND xã Lũng Cú", level: commune, group: xa, parent: 000.00.41.H99,
     valid_to: 2025-06-30, successors: [000.01.70.H99], staff_count: 25}
  - {code: 000.02.41.H99, name: "UBND xã Má Lé", level: commune, group: xa, parent: 000.00.41.H99,
     valid_to: 2025-06-30, successors: [000.01.70.H99], staff_count: 22}
  - {code: 000.01.70.H99, name: "UBND xã Lũng Cú mới", level: commune, group: xa,
     parent: 000.00.00.H99, valid_from: 2025-07-01, staff_count: 45}
"""


def write(tmp_path: Path, text: str, name: str = "units.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tree_before_and_after_the_reform(tmp_path: Path) -> None:
    tree = load_units(write(tmp_path, TREE))
    before, after = date(2025, 6, 30), date(2025, 7, 1)
    assert tree.ancestors("000.01.41.H99", before) == ("000.00.41.H99", "000.00.00.H99")
    assert sorted(tree.subtree("000.00.00.H99", before)) == sorted(
        ["000.00.00.H99", "000.00.01.H99", "000.00.41.H99", "000.01.41.H99", "000.02.41.H99"])
    assert sorted(tree.subtree("000.00.00.H99", after)) == sorted(
        ["000.00.00.H99", "000.00.01.H99", "000.01.70.H99"])
    assert not any(u.level is Level.district for u in tree.valid_on(after))
    assert tree.predecessors("000.01.70.H99") == ("000.01.41.H99", "000.02.41.H99")
    assert tree.get("000.00.01.H99").head.name == "Trần Thị Bình"  # type: ignore[union-attr]
    assert tree.display_group("xa") == "Xã, phường"


def test_versions_of_one_code_can_change_parent(tmp_path: Path) -> None:
    text = TREE + """\
  - {code: 000.03.01.H99, name: "Chi cục A", level: agency, group: don_vi, parent: 000.00.01.H99,
     valid_to: 2025-02-28}
  - {code: 000.03.01.H99, name: "Chi cục A", level: agency, group: don_vi, parent: 000.00.00.H99,
     valid_from: 2025-03-01}
"""
    tree = load_units(write(tmp_path, text))
    assert tree.ancestors("000.03.01.H99", date(2025, 2, 28))[0] == "000.00.01.H99"
    assert tree.ancestors("000.03.01.H99", date(2025, 3, 1))[0] == "000.00.00.H99"


@pytest.mark.parametrize(("change", "expected"), [
    (("parent: 000.00.00.H99, valid_from: 2025-07-01", "parent: 000.00.99.H99, valid_from: 2025-07-01"),
     "unknown unit '000.00.99.H99'"),
    (("successors: [000.01.70.H99], staff_count: 25", "successors: [000.09.70.H99], staff_count: 25"),
     "unknown unit '000.09.70.H99'"),
    (("code: 000.00.01.H99", "code: 0.0.1.H99"), "not a QCVN 102 identifier code"),
    (("staff_count: 80", "staff_count: -3"), "greater than or equal to 0"),
    (("level: department", "level: ministryy"), "Input should be"),
])
def test_problems_name_the_unit_and_line(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        load_units(write(tmp_path, TREE.replace(*change)))
    assert all(p.line is not None and p.line >= 5 for p in caught.value.problems)


def test_overlapping_versions_are_refused(tmp_path: Path) -> None:
    text = TREE + '  - {code: 000.00.01.H99, name: "Sở Tư pháp 2", level: department, group: so_nganh}\n'
    with pytest.raises(ConfigError, match="overlaps another version"):
        load_units(write(tmp_path, text))


def test_parent_cycle_is_refused(tmp_path: Path) -> None:
    text = """\
version: 1
units:
  - {code: 000.00.01.H99, name: A, level: department, group: g, parent: 000.00.02.H99}
  - {code: 000.00.02.H99, name: B, level: department, group: g, parent: 000.00.01.H99}
"""
    with pytest.raises(ConfigError, match="loops back"):
        load_units(write(tmp_path, text))


def test_csv_loads_with_vietnamese_and_bom(tmp_path: Path) -> None:
    text = ("\ufeffcode,name,level,group,parent,head_name,head_email,staff_count,valid_to,successors\n"
            "000.00.00.H99,UBND tỉnh Sơn Hà,province,tinh,,,,0,,\n"
            "000.00.41.H99,UBND huyện Đồng Văn,district,huyen,000.00.00.H99,Lò Văn Páo,pao@sonha.gov.vn,120,"
            "2025-06-30,000.00.00.H99\n")
    tree = load_units(write(tmp_path, text, "units.csv"))
    district = tree.get("000.00.41.H99")
    assert district is not None and district.name == "UBND huyện Đồng Văn"
    assert district.head is not None and district.head.email == "pao@sonha.gov.vn"
    assert district.valid_to == date(2025, 6, 30) and district.successors == ("000.00.00.H99",)


def test_csv_problem_names_row(tmp_path: Path) -> None:
    text = "code,name,level,group\n000.00.00.H99,Tỉnh,province,tinh\nbad,Xã,commune,xa\n"
    with pytest.raises(ConfigError, match=r"units.csv:3: code"):
        load_units(write(tmp_path, text, "units.csv"))

