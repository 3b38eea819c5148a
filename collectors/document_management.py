"""Document management (QLVB-ĐH) with the e-document exchange axis: kind ``document_management``.

``GET /qlvb/api/v1/statistics?from=&to=&grain=&page=&page_size=``, one record
per (unit, period); see docs/sources.md for the fields and their measures.
"""

from __future__ import annotations

from typing import ClassVar

from collectors.records import (
    Count,
    RecordKey,
    StatisticsCollector,
    StatisticsRecord,
    WireDate,
    WireModel,
    exceeds,
)


class Outgoing(WireModel):
    TongSo: Count
    DienTu: Count
    KySo: Count


class Incoming(WireModel):
    TongSo: Count
    XuLyTrenPhanMem: Count


class WorkRecords(WireModel):
    TongSo: Count
    TrenMoiTruongMang: Count


class Accounts(WireModel):
    TongSo: Count
    CoThaoTac: Count


class DocumentStatistics(StatisticsRecord):
    OrganId: str
    Period: str
    From: WireDate
    To: WireDate
    SoVanBanDi: Outgoing
    SoVanBanDen: Incoming
    HoSoCongViec: WorkRecords
    TaiKhoan: Accounts

    def key(self) -> RecordKey:
        return RecordKey(self.OrganId, self.Period, self.From, self.To,
                         ("OrganId", "Period", "From", "To"))

    def measures(self) -> dict[str, int]:
        return {
            "docs_outgoing_total": self.SoVanBanDi.TongSo,
            "docs_outgoing_electronic": self.SoVanBanDi.DienTu,
            "docs_outgoing_signed": self.SoVanBanDi.KySo,
            "docs_incoming_total": self.SoVanBanDen.TongSo,
            "docs_incoming_electronic": self.SoVanBanDen.XuLyTrenPhanMem,
            "work_records_total": self.HoSoCongViec.TongSo,
            "work_records_online": self.HoSoCongViec.TrenMoiTruongMang,
            "docmgmt_accounts_total": self.TaiKhoan.TongSo,
            "docmgmt_accounts_active": self.TaiKhoan.CoThaoTac,
        }

    def inconsistencies(self) -> list[str]:
        out, inc, work, acc = self.SoVanBanDi, self.SoVanBanDen, self.HoSoCongViec, self.TaiKhoan
        return [
            *exceeds("SoVanBanDi.DienTu", out.DienTu, "SoVanBanDi.TongSo", out.TongSo),
            *exceeds("SoVanBanDi.KySo", out.KySo, "SoVanBanDi.DienTu", out.DienTu),
            *exceeds("SoVanBanDen.XuLyTrenPhanMem", inc.XuLyTrenPhanMem,
                     "SoVanBanDen.TongSo", inc.TongSo),
            *exceeds("HoSoCongViec.TrenMoiTruongMang", work.TrenMoiTruongMang,
                     "HoSoCongViec.TongSo", work.TongSo),
            *exceeds("TaiKhoan.CoThaoTac", acc.CoThaoTac, "TaiKhoan.TongSo", acc.TongSo),
        ]


class DocumentManagementCollector(StatisticsCollector):
    kind: ClassVar[str] = "document_management"
    path: ClassVar[str] = "/qlvb/api/v1/statistics"
    record_model: ClassVar[type[StatisticsRecord]] = DocumentStatistics
