"""Property: the ``spreadsheet`` collector, reading a drop folder of CSV and XLSX
files with arbitrary cells (or the mutated bytes of a valid file), keeps the
collector contract and accounts for every file: it is read, or refused with a reason."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from monitor.timeutil import Period
from tests.collectors.spreadsheet_fixtures import (
    HEADER,
    MEASURES,
    NOW,
    TZ,
    UNITS,
    age,
    collector,
    write_csv,
    write_xlsx,
)
from tests.fuzz.checks import fuzz
from tests.fuzz.rig import Rig, check_result, collected
from tests.fuzz.strategies import TEXT, mutated_bytes

VALID_ROWS = [[unit, month, 120, 80, 300, 250] for unit in UNITS for month in ("2026-09", "2026-10")]
# Cells as people type them into a spreadsheet, and as openpyxl can store them.
CELL = st.one_of(
    st.none(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True), TEXT,
    st.booleans(), st.datetimes(datetime(1900, 3, 1), datetime(2100, 1, 1)),
    st.sampled_from(["1.234", "1,5", " 12 ", "-3", "1e400", "=1+1", "#N/A", "2026-10", "10/2026", "T10/2026",
                     *UNITS, "000.00.77.H99"]))
ROW = st.lists(CELL, min_size=0, max_size=8)
HEADER_CELL = st.sampled_from([*HEADER, "", "Ghi chú", HEADER[0].upper()]) | TEXT


def collect_folder(rig: Rig, folder: Path) -> Any:
    age(folder)
    source = collector(folder)
    return check_result(rig.run(collected(source.collect([Period.containing(NOW, "day", TZ)], set(UNITS)))),
                        set(UNITS))


def accounted(outcome: Any, files: int) -> None:
    """Every file is read or refused: with files present, something must come back."""
    if outcome is not None and files:
        assert outcome.observations or outcome.rejections, "files in the folder, and no word about them"
    if outcome is not None:
        measures = {o.measure for o in outcome.observations}
        assert measures <= set(MEASURES), measures  # only the columns configured


@fuzz(25)
@given(rows=st.lists(ROW, max_size=6), header=st.none() | st.lists(HEADER_CELL, max_size=8),
       xlsx=st.booleans())
@example(rows=[[UNITS[0], "2026-10", 1e308 * 10, -1, "1e400", True]], header=None, xlsx=True)
@example(rows=[[UNITS[0], "2026-10", 10**20, 0, 0, 0]], header=None, xlsx=False)
def test_arbitrary_cells_keep_the_contract(rig: Rig, tmp_path_factory: Any, rows: list[list[Any]],
                                           header: list[Any] | None, xlsx: bool) -> None:
    folder: Path = tmp_path_factory.mktemp("drop")
    if xlsx:  # openpyxl cannot store control characters at all; a CSV gets them
        def legal(cell: Any) -> Any:
            return ILLEGAL_CHARACTERS_RE.sub("", cell) if isinstance(cell, str) else cell

        write_xlsx(folder / "báo cáo.xlsx", [[legal(c) for c in row] for row in rows],
                   header=None if header is None else [legal(c) for c in header])
    else:
        write_csv(folder / "bao-cao.csv", [[("" if c is None else c) for c in row] for row in rows], header=header)
    accounted(collect_folder(rig, folder), 1)


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Valid reports, written once: an XLSX carries its save time, and hypothesis needs
    the same seed bytes on every replay of an example."""
    folder = tmp_path_factory.mktemp("seed")
    return {"bao-cao.xlsx": write_xlsx(folder / "bao-cao.xlsx", VALID_ROWS).read_bytes(),
            "bao-cao.csv": write_csv(folder / "bao-cao.csv", VALID_ROWS).read_bytes()}


@fuzz(40)
@given(data=st.data(), name=st.sampled_from(["bao-cao.xlsx", "bao-cao.csv"]))
def test_mutated_file_bytes_keep_the_contract(rig: Rig, tmp_path_factory: Any, originals: dict[str, bytes],
                                              data: st.DataObject, name: str) -> None:
    """A valid report's bytes flipped, cut or spliced: a broken zip, broken XML, bad encodings."""
    folder: Path = tmp_path_factory.mktemp("drop")
    (folder / name).write_bytes(data.draw(mutated_bytes(originals[name]), label="content"))
    accounted(collect_folder(rig, folder), 1)
