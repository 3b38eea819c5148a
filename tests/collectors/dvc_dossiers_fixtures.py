"""Generated dossiers in the portal's sync shape, an HTTP source serving them, and the
measures recomputed from them with plain Python (no collector code), per
../shared/DOMAIN.md (d) and the mapping table of docs/connect/dvc_dossiers.md.

A dossier's truth (aware datetimes) is kept next to its wire form, which spells
each time in one of the formats a real system may use.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from monitor.timeutil import Period, zone

VN = zone("Asia/Ho_Chi_Minh")
PATH = "/api/v1/dong-bo/ho-so"
UNITS = ("000.00.01.H99", "000.00.02.H99", "000.01.02.H99")
OPEN = (2, 4, 5, 6, 8)
ALL_MEASURES = ("dossiers_received_total", "dossiers_received_online", "dossiers_received_postal",
                "dossiers_resolved_total", "dossiers_resolved_ontime", "dossiers_with_fee",
                "dossiers_paid_online", "dossiers_digitized", "dossiers_in_progress", "dossiers_overdue")


@dataclass(frozen=True)
class Truth:
    """One version of a dossier, as the test knows it."""

    id: str
    unit: str
    status: int
    channel: int
    updated: datetime
    received: datetime | None
    due: datetime | None
    finished: datetime | None
    fee: int = 0
    paid: int = 0
    digitized: int = 0
    formats: tuple[str, ...] = field(default=("iso",) * 4)


def spell(instant: datetime | None, style: str) -> str | None:
    """``instant`` as a source may send it; naive styles are Hanoi local time."""
    if instant is None:
        return None
    local = instant.astimezone(VN)
    return {
        "iso": local.isoformat(),
        "utc": instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "naive": local.strftime("%Y-%m-%d %H:%M:%S"),
        "compact": local.strftime("%Y%m%d%H%M%S"),
    }[style]


def wire(t: Truth) -> dict[str, Any]:
    record: dict[str, Any] = {
        "MaHoSo": t.id, "MaTTHC": "1.001234", "TenTTHC": "Cấp giấy phép xây dựng",
        "DonViXuLy": t.unit, "TrangThaiHoSo": t.status if t.status % 2 else str(t.status),
        "KenhThucHien": t.channel, "ChuHoSo": "Nguyễn Văn A",
        "NgayCapNhat": spell(t.updated, t.formats[0]),
        "NgayTiepNhan": spell(t.received, t.formats[1]),
        "NgayHenTra": spell(t.due, t.formats[2]),
        "NgayKetThucXuLy": spell(t.finished, t.formats[3]),
        "DuocThanhToanTrucTuyen": t.paid, "HoSoCoThanhPhanSoHoa": t.digitized,
        "DanhSachLePhi": [{"MaPhiLePhi": "LP01", "Gia": t.fee, "HinhThucThu": 1}] if t.fee else [],
    }
    return record


def generate(seed: int, count: int, start: datetime, now: datetime,
             units: tuple[str, ...] = UNITS) -> list[list[Truth]]:
    """``count`` dossiers, each a list of versions (oldest first): random statuses,
    channels and dates between ``start`` and ``now``; about a third were updated."""
    rng = random.Random(seed)
    span = (now - start).total_seconds()
    dossiers = []
    for number in range(count):
        received = start + timedelta(seconds=rng.randint(0, int(span) - 120))  # whole seconds: every format keeps them
        status = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 10, 10, 10])
        due = received + timedelta(days=rng.randint(1, 20), hours=rng.randint(0, 8))
        finished = None
        if status in (7, 9, 10) and not (status == 7 and rng.random() < 0.5):
            room = min(30 * 86400, int((now - received).total_seconds()) - 60)
            finished = received + timedelta(seconds=rng.randint(0, room))
        formats = tuple(rng.choice(["iso", "utc", "naive", "compact"]) for _ in range(4))
        final = Truth(
            id=f"H99.{number:06d}", unit=rng.choice(units), status=status, channel=rng.choice([1, 2, 2, 3]),
            updated=(finished or received) + timedelta(hours=1),
            received=None if status == 1 else received,
            due=None if status == 1 else due, finished=finished,
            fee=rng.choice([0, 0, 50_000, 100_000]), paid=rng.choice([0, 0, 1, 2]),
            digitized=rng.choice([0, 1]), formats=formats)
        if final.paid and not final.fee:
            final = replace(final, paid=0)
        versions = [final]
        if status in (4, 9, 10) and rng.random() < 0.35:
            versions.insert(0, replace(final, status=2, finished=None, updated=received + timedelta(minutes=5)))
        dossiers.append(versions)
    return dossiers


def shuffled_records(dossiers: list[list[Truth]], seed: int) -> list[dict[str, Any]]:
    records = [wire(v) for versions in dossiers for v in versions]
    random.Random(seed).shuffle(records)
    return records


# ----------------------------------------------------------------------------- the expected numbers

def open_at(t: Truth, instant: datetime) -> bool:
    if t.status in (1, 3) or t.received is None or t.received >= instant:
        return False
    if t.status in OPEN:
        return True
    return t.finished is not None and t.finished >= instant  # 7 without a date: cannot be placed


def expected(finals: list[Truth], periods: list[Period], now: datetime
             ) -> dict[tuple[str, Period], dict[str, int]]:
    """(unit, period) → measure → count, only the non-zero ones."""
    table: dict[tuple[str, Period], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in finals:
        for period in periods:
            counts = table[(t.unit, period)]
            inside = t.received is not None and period.start <= t.received < period.end
            if inside and t.status not in (1, 3):
                counts["dossiers_received_total"] += 1
                counts["dossiers_received_online"] += t.channel == 2
                counts["dossiers_received_postal"] += t.channel == 3
                counts["dossiers_with_fee"] += t.fee > 0 or t.paid in (1, 2)
                counts["dossiers_paid_online"] += t.paid in (1, 2)
                counts["dossiers_digitized"] += t.digitized == 1
            if t.status in (9, 10) and t.finished and period.start <= t.finished < period.end:
                counts["dossiers_resolved_total"] += 1
                counts["dossiers_resolved_ontime"] += t.due is not None and t.finished <= t.due
            instant = min(period.end, now)
            if open_at(t, instant):
                counts["dossiers_in_progress"] += 1
                counts["dossiers_overdue"] += t.due is not None and t.due < instant
    return {key: {m: n for m, n in counts.items() if n} for key, counts in table.items()
            if any(counts.values())}


# ----------------------------------------------------------------------------- the source

class DossierSource:
    """``GET PATH?from=&to=&page=&page_size=`` over a fixed list, pages as the portal pages."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.queries: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        page, size = int(request.query["page"]), int(request.query["page_size"])
        chunk = self.records[(page - 1) * size:page * size]
        total_pages = max(1, -(-len(self.records) // size))
        body = {"data": chunk, "page": page, "page_size": size, "total": len(self.records),
                "total_pages": total_pages}
        return web.json_response(body, dumps=lambda d: json.dumps(d, ensure_ascii=False))
