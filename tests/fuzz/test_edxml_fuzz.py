"""Property: an edXML envelope's mutated bytes are counted or refused with a reason
(``EnvelopeError``), one by one and through the folder collector; never another
exception, never an entity expanded."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from collectors import SourceSettings
from collectors.edxml import EdxmlCollector, EnvelopeError, parse_envelope
from monitor.timeutil import FrozenClock, Period
from tests.collectors.conftest import TZ
from tests.collectors.edxml_envelopes import Doc, billion_laughs
from tests.fuzz.checks import fuzz
from tests.fuzz.rig import Rig, check_result, collected
from tests.fuzz.strategies import mutated_bytes

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
UNITS = {"000.00.01.H99", "000.00.02.H99", "000.00.03.H99"}
MONTHS = [Period.of_month(2026, m, TZ) for m in (9, 10, 11)]
SEEDS = [Doc("000.00.01.H99", ("000.00.02.H99", "000.00.03.H99"), date(2026, 10, 5), 17, signed=True),
         Doc("000.00.02.H99", ("000.00.01.H99",), date(2026, 9, 30), 4, signed=False, signature="sdk"),
         Doc("000.00.03.H99", ("000.00.01.H99",), date(2026, 11, 2), 9, signed=True, prefixed_root=True)]
ORIGINALS = [doc.xml() for doc in SEEDS]


def test_the_seeds_parse() -> None:
    for data in ORIGINALS:
        parse_envelope(data, "seed")


@fuzz(200)
@given(index=st.integers(0, len(ORIGINALS) - 1), data=st.data())
@example(index=0, data=None)
@example(index=1, data=None)
@example(index=2, data=None)
def test_a_mutated_envelope_parses_or_says_why(index: int, data: st.DataObject | None) -> None:
    # An entity bomb; encodings expat cannot read: unknown, and multi-byte.
    hostile = [billion_laughs(), ORIGINALS[0].replace(b'encoding="UTF-8"', b'encoding="TF-8"', 1),
               ORIGINALS[1].replace(b'encoding="UTF-8"', b'encoding="shift_jis"', 1)]
    assert all(h != o for h, o in zip(hostile[1:], ORIGINALS[:2], strict=True))
    content = data.draw(mutated_bytes(ORIGINALS[index], 8), label="content") if data else hostile[index]
    try:
        parse_envelope(content, "fuzzed.edxml")
    except EnvelopeError as error:
        assert error.reason and error.detail, error


@fuzz(40)
@given(data=st.data())
def test_a_folder_of_mutated_envelopes_keeps_the_contract(rig: Rig, tmp_path_factory: Any,
                                                          data: st.DataObject) -> None:
    folder: Path = tmp_path_factory.mktemp("edxml")
    refused = 0
    for i, original in enumerate(ORIGINALS):
        content = data.draw(mutated_bytes(original, 4) | st.just(original), label=f"file {i}")
        (folder / f"{i:02d}.edxml").write_bytes(content)
        try:
            parse_envelope(content, "check")
        except EnvelopeError:
            refused += 1
    settings = SourceSettings(id="truc-edxml", kind="edxml", url=folder.as_uri(), grain="month")
    source = EdxmlCollector(settings, rig.harness.http(), TZ, FrozenClock(NOW))
    outcome = check_result(rig.run(collected(source.collect(MONTHS, UNITS))), UNITS)
    if outcome is not None:
        # Accounting: each envelope that cannot be counted is reported, none silently dropped.
        assert len(outcome.rejections) >= refused, (refused, outcome.rejections)
