"""One-stop shop / online public services (Hệ thống thông tin giải quyết TTHC): kind ``one_stop``.

``GET /motcua/api/v1/bao-cao?from=&to=&grain=&page=&page_size=``, one record
per (unit, period); see docs/sources.md for the fields and their measures.
Code-keyed counts (``TheoTrangThai``, ``TiepNhanTheoKenh``,
``ThanhToanTrucTuyen``) may leave out codes with nothing in them: an absent
code counts 0. A code outside the documented list is schema drift.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from collectors.records import (
    Count,
    RecordKey,
    StatisticsCollector,
    StatisticsRecord,
    WireDate,
    WireModel,
    code_in,
    differs,
    exceeds,
)

NOT_RECEIVED = frozenset({"1", "3"})  # TrangThaiHoSo 1 new (not yet received), 3 not received
ONLINE, POSTAL = "2", "3"  # KenhThucHien

StatusCode = Annotated[str, code_in(range(1, 11), "TrangThaiHoSo")]
ChannelCode = Annotated[str, code_in(range(1, 4), "KenhThucHien")]
PaymentCode = Annotated[str, code_in(range(1, 3), "DuocThanhToanTrucTuyen")]


class Resolved(WireModel):
    TruocHan: Count
    DungHan: Count
    TreHan: Count


class Procedures(WireModel):
    TongSo: Count
    DVCTT: Count
    DuDieuKienToanTrinh: Count
    ToanTrinh: Count


class OneStopReport(StatisticsRecord):
    MaDonVi: str
    Ky: str
    TuNgay: WireDate
    DenNgay: WireDate
    TongSoHoSoBaoCao: Count
    TheoTrangThai: dict[StatusCode, Count]
    TiepNhanTheoKenh: dict[ChannelCode, Count]
    DaXuLy: Resolved
    CoPhiLePhi: Count
    ThanhToanTrucTuyen: dict[PaymentCode, Count]
    SoHoa: Count
    ThuTuc: Procedures

    def key(self) -> RecordKey:
        return RecordKey(self.MaDonVi, self.Ky, self.TuNgay, self.DenNgay,
                         ("MaDonVi", "Ky", "TuNgay", "DenNgay"))

    @property
    def received(self) -> int:
        return sum(n for code, n in self.TheoTrangThai.items() if code not in NOT_RECEIVED)

    def measures(self) -> dict[str, int]:
        done, procedures = self.DaXuLy, self.ThuTuc
        return {
            "dossiers_reported_total": self.TongSoHoSoBaoCao,
            "dossiers_received_total": self.received,
            "dossiers_received_online": self.TiepNhanTheoKenh.get(ONLINE, 0),
            "dossiers_received_postal": self.TiepNhanTheoKenh.get(POSTAL, 0),
            "dossiers_resolved_total": done.TruocHan + done.DungHan + done.TreHan,
            "dossiers_resolved_ontime": done.TruocHan + done.DungHan,
            "dossiers_with_fee": self.CoPhiLePhi,
            "dossiers_paid_online": sum(self.ThanhToanTrucTuyen.values()),
            "dossiers_digitized": self.SoHoa,
            "procedures_total": procedures.TongSo,
            "procedures_online": procedures.DVCTT,
            "procedures_full_online_eligible": procedures.DuDieuKienToanTrinh,
            "procedures_full_online": procedures.ToanTrinh,
        }

    def inconsistencies(self) -> list[str]:
        received = "received (Σ TheoTrangThai not 1, 3)"
        procedures = self.ThuTuc
        return [
            *differs("Σ TiepNhanTheoKenh", sum(self.TiepNhanTheoKenh.values()),
                     received, self.received),
            *exceeds("Σ ThanhToanTrucTuyen", sum(self.ThanhToanTrucTuyen.values()),
                     "CoPhiLePhi", self.CoPhiLePhi),
            *exceeds("CoPhiLePhi", self.CoPhiLePhi, received, self.received),
            *exceeds("SoHoa", self.SoHoa, received, self.received),
            *exceeds("ThuTuc.DVCTT", procedures.DVCTT, "ThuTuc.TongSo", procedures.TongSo),
            *exceeds("ThuTuc.ToanTrinh", procedures.ToanTrinh,
                     "ThuTuc.DuDieuKienToanTrinh", procedures.DuDieuKienToanTrinh),
        ]


class OneStopCollector(StatisticsCollector):
    kind: ClassVar[str] = "one_stop"
    path: ClassVar[str] = "/motcua/api/v1/bao-cao"
    record_model: ClassVar[type[StatisticsRecord]] = OneStopReport
