"""The digest email: what a unit head, an escalation contact and the operator receive.

Every expected string here is written out by hand (not computed with the code under
test), so a formatting slip in compose.py fails a test.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import itertools
import unicodedata
from dataclasses import replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from html import unescape

import pytest

from monitor.alerts.compose import (
    KIND_NAMES,
    MAX_SUBJECT,
    STATUS_NAMES,
    TEXTS,
    compose,
    format_gap,
    format_percent,
    format_trend,
    subject_of,
)
from monitor.alerts.model import Digest, Recipient, SourceItem, TargetItem

SENDER = "Giám sát CQĐT <egovmon@sonha.gov.vn>"
DOMAIN = "sonha.gov.vn"
CREATED = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội


def item(**changes: object) -> TargetItem:
    base = TargetItem(
        kind="firing",
        rule="egov.online_dossier_2026",
        rule_title="Tỷ lệ hồ sơ trực tuyến năm 2026",
        kpi="online_dossier_rate",
        kpi_name="Tỷ lệ hồ sơ trực tuyến",
        unit="000.01.H99",
        unit_name="Sở Nội vụ",
        status="behind",
        severity="warning",
        actual=0.725,
        expected=0.848,
        target=0.9,
        comparator=">=",
        gap=0.123,
        gap_to_target=0.175,
        deadline=date(2026, 12, 31),
        forecast_value=0.81,
        forecast_reached_on=None,
        forecast_reachable=False,
        trend_per_year=0.052,
        citation="QĐ 942/QĐ-TTg (15/6/2021): Chiến lược phát triển Chính phủ điện tử",
        citation_url="https://vanban.chinhphu.vn/?docid=203770",
        since=datetime(2026, 11, 28, 1, 30, tzinfo=UTC),  # 08:30 local
        escalation_level=0,
        data_through=datetime(2026, 11, 30, 17, 0, tzinfo=UTC),  # local midnight of 1/12: data through 30/11
        report_url="https://egov.sonha.gov.vn/units/000.01.H99?as_of=2026-12-01&tab=kpi",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def source(**changes: object) -> SourceItem:
    base = SourceItem(
        kind="firing",
        source="dvc-sonha",
        source_kind="dvc_portal",
        problem="down",
        detail="HTTP 503 from https://dichvucong.sonha.gov.vn/api",
        since=datetime(2026, 12, 1, 0, 15, tzinfo=UTC),  # 07:15 local
        last_success_at=datetime(2026, 11, 30, 23, 45, tzinfo=UTC),  # 06:45 local
        inhibited=3,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def digest(*items: TargetItem, **changes: object) -> Digest:
    base = Digest(
        recipient=Recipient("hang.nt@sonha.gov.vn", "Nguyễn Thị Hằng", "vi"),
        province="Sơn Hà",
        created_at=CREATED,
        timezone="Asia/Ho_Chi_Minh",
        items=items,
        thread_key="000.01.H99",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def send(d: Digest, key: str = "digest:2026-12-01T03:00:00Z:hang.nt@sonha.gov.vn") -> bytes:
    return compose(d, sender=SENDER, domain=DOMAIN, message_key=key).as_bytes(policy=email.policy.SMTP)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def bodies(data: bytes) -> tuple[str, str]:
    msg = parse(data)
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    # Quoted-printable keeps the wire's CRLF line ends; compare with plain newlines.
    return plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


# --- formatting helpers ---------------------------------------------------------------------------


def test_numbers_use_the_readers_decimal_mark() -> None:
    assert format_percent(0.725, "vi") == "72,5 %"
    assert format_percent(0.725, "en") == "72.5%"
    assert format_percent(None, "vi") == "—"
    assert format_percent(0.0, "vi") == "0,0 %"  # a real zero stays a zero
    assert format_gap(0.123, "vi") == "thiếu 12,3 điểm %"
    assert format_gap(0.123, "en") == "12.3 pts behind"
    assert format_gap(-0.03, "vi") == "vượt 3,0 điểm %"
    assert format_gap(-0.03, "en") == "3.0 pts ahead"
    assert format_trend(0.052, "vi") == "+5,2 điểm %/năm"
    assert format_trend(-0.015, "en") == "-1.5 pts/year"


def test_both_languages_have_every_text() -> None:
    assert TEXTS["vi"].keys() == TEXTS["en"].keys()
    assert STATUS_NAMES["vi"].keys() == STATUS_NAMES["en"].keys()
    assert KIND_NAMES["vi"].keys() == KIND_NAMES["en"].keys()


# --- headers --------------------------------------------------------------------------------------


def test_vietnamese_headers_round_trip_exactly() -> None:
    d = digest(item(), item(rule="r2", rule_title="Tỷ lệ DVCTT toàn trình", gap=0.05),
               item(rule="r3", rule_title="Tỷ lệ số hóa hồ sơ", kind="resolved", status="on_track", gap=-0.03),
               cc=(Recipient("vanphong@sonha.gov.vn", "Văn phòng UBND tỉnh"),))
    msg = parse(send(d))

    assert msg["Subject"] == "[Sơn Hà] Sở Nội vụ: 2 chỉ tiêu chậm tiến độ, 1 đã khắc phục"
    assert subject_of(d) == "[Sơn Hà] Sở Nội vụ: 2 chỉ tiêu chậm tiến độ, 1 đã khắc phục"
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Giám sát CQĐT", "egovmon@sonha.gov.vn")
    (to,) = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Nguyễn Thị Hằng", "hang.nt@sonha.gov.vn")
    (cc,) = msg["Cc"].addresses
    assert (cc.display_name, cc.addr_spec) == ("Văn phòng UBND tỉnh", "vanphong@sonha.gov.vn")
    assert msg["Date"] == "Tue, 01 Dec 2026 03:00:00 +0000"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Content-Language"] == "vi"


def test_raw_message_is_ascii_with_crlf_lines() -> None:
    data = send(digest(item()))
    headers = header_block(data)
    headers.decode("ascii")  # RFC 2047 encoded words, no raw UTF-8 without SMTPUTF8
    assert b"=?utf-8?" in headers
    data.decode("ascii")  # bodies are quoted-printable too: safe over any relay
    assert data.count(b"\n") == data.count(b"\r\n")


WORDS = ("Sở", "Nội", "vụ", "UBND", "xã", "Tân", "Lập,", "chỉ", "tiêu", "(mức", "1)", "Đài", "Phát", "thanh",
         "và", "Truyền", "hình:", "evil@x.vn", "Trung", "tâm", "Phục", "hành", "chính", "công", "[Sơn", "Hà]")


@pytest.mark.parametrize("length", range(1, 45))
def test_long_vietnamese_headers_decode_exactly(length: int) -> None:
    """Long subjects and names are split over several lines; not a space may be lost or added
    (CPython 3.11's own folding does both)."""
    text = " ".join(itertools.islice(itertools.cycle(WORDS), length * 3, length * 4))
    d = digest(item(unit_name=text), recipient=Recipient("hang.nt@sonha.gov.vn", text),
               cc=(Recipient("a@sonha.gov.vn", text[:40]), Recipient("b@sonha.gov.vn", "Tran, Van B")))
    data = send(d)
    msg = parse(data)
    assert msg["Subject"] == subject_of(d)
    name = text if len(text) <= 100 else text[:99].rstrip() + "…"  # display names are capped at 100
    assert msg["To"].addresses[0].display_name == name
    assert [a.display_name for a in msg["Cc"].addresses] == [text[:40].strip(), "Tran, Van B"]
    for line in header_block(data).split(b"\r\n"):
        if line.startswith((b"Subject:", b" =?")):
            assert len(line) <= 78


def test_headers_stay_readable_on_the_message_object() -> None:
    """The SMTP sender reads recipients off the message before it is serialised."""
    msg = compose(digest(item(), cc=(Recipient("vp@sonha.gov.vn", "Văn phòng"),)), sender=SENDER, domain=DOMAIN,
                  message_key="k")
    assert msg["Subject"] == "[Sơn Hà] Sở Nội vụ: 1 chỉ tiêu chậm tiến độ"
    assert [a.addr_spec for a in msg["To"].addresses] == ["hang.nt@sonha.gov.vn"]
    assert [a.display_name for a in msg["Cc"].addresses] == ["Văn phòng"]
    assert parse(msg.as_bytes(policy=email.policy.SMTPUTF8))["Subject"] == msg["Subject"]


def test_message_id_is_stable_per_message_key() -> None:
    d = digest(item())
    first = parse(send(d, "digest:2026-12-01T03:00:00Z:hang.nt@sonha.gov.vn"))["Message-ID"]
    retry = parse(send(d, "digest:2026-12-01T03:00:00Z:hang.nt@sonha.gov.vn"))["Message-ID"]
    other = parse(send(d, "digest:2026-12-02T03:00:00Z:hang.nt@sonha.gov.vn"))["Message-ID"]
    expected = hashlib.sha256(b"digest:2026-12-01T03:00:00Z:hang.nt@sonha.gov.vn").hexdigest()[:32]
    assert first == retry == f"<{expected}@sonha.gov.vn>"
    assert other != first
    assert send(d, "k") == send(d, "k")  # a retry is byte for byte the same message


def test_digests_of_one_unit_thread_together() -> None:
    monday = parse(send(digest(item()), "k1"))
    tuesday = parse(send(digest(item(kind="reminder", gap=0.2), created_at=datetime(2026, 12, 2, 3, tzinfo=UTC)), "k2"))
    elsewhere = parse(send(digest(item(unit="000.02.H99", unit_name="UBND xã Tân Lập"), thread_key="000.02.H99"), "k3"))
    thread = hashlib.sha256(b"000.01.H99").hexdigest()[:24]
    assert monday["References"] == tuesday["References"] == f"<thread-{thread}@sonha.gov.vn>"
    assert monday["In-Reply-To"] == monday["References"]
    assert monday["X-Egovmon-Thread"] == "000.01.H99"
    assert elsewhere["References"] != monday["References"]
    assert monday["Message-ID"] != tuesday["Message-ID"]


def test_line_breaks_in_names_cannot_add_headers() -> None:
    evil = "Sở Nội vụ\r\nBcc: evil@x.vn"
    d = digest(item(unit_name=evil), recipient=Recipient("hang.nt@sonha.gov.vn", "Nguyễn Thị Hằng\r\nBcc: evil@x.vn"),
               cc=(Recipient("vp@sonha.gov.vn", "Văn phòng\nBcc: evil@x.vn"),), thread_key="000.01\r\nBcc: evil@x.vn")
    data = send(d)
    msg = parse(data)

    assert msg["Bcc"] is None
    assert b"\nBcc:" not in header_block(data)
    assert msg["Subject"] == "[Sơn Hà] Sở Nội vụ Bcc: evil@x.vn: 1 chỉ tiêu chậm tiến độ"
    assert msg["To"].addresses[0].display_name == "Nguyễn Thị Hằng Bcc: evil@x.vn"
    assert msg["To"].addresses[0].addr_spec == "hang.nt@sonha.gov.vn"
    assert msg["X-Egovmon-Thread"] == "000.01 Bcc: evil@x.vn"
    assert sorted(msg.keys()) == sorted([
        "From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
        "X-Auto-Response-Suppress", "X-Egovmon-Thread", "MIME-Version", "Content-Type", "Content-Language"])


def test_an_address_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="address"):
        send(digest(item(), recipient=Recipient("hang.nt@sonha.gov.vn\r\nBcc: evil@x.vn", "Hằng")))
    with pytest.raises(ValueError, match="sender"):
        compose(digest(item()), sender="CQĐT <egovmon@sonha.gov.vn>\r\nBcc: evil@x.vn", domain=DOMAIN, message_key="k")
    with pytest.raises(ValueError, match="address"):
        send(digest(item(), recipient=Recipient("hằng@sonha.gov.vn", "Hằng")))
    with pytest.raises(ValueError, match="host name"):
        compose(digest(item()), sender=SENDER, domain="sonha.gov.vn>\r\nBcc: x", message_key="k")


def test_long_unit_names_are_shortened_in_the_subject() -> None:
    name = "Trung tâm Phục vụ hành chính công " + "và Kiểm soát thủ tục hành chính " * 6
    subject = parse(send(digest(item(unit_name=name))))["Subject"]
    assert len(subject) <= MAX_SUBJECT
    assert subject.startswith("[Sơn Hà] Trung tâm Phục vụ hành chính công")
    assert subject.endswith("…: 1 chỉ tiêu chậm tiến độ")


def test_several_units_are_counted_in_the_subject() -> None:
    d = digest(item(), item(unit="000.02.H99", unit_name="UBND xã Tân Lập"),
               item(unit="000.03.H99", unit_name="Đài Phát thanh và Truyền hình", kind="resolved"))
    assert subject_of(d) == "[Sơn Hà] 3 đơn vị: 2 chỉ tiêu chậm tiến độ, 1 đã khắc phục"
    en = replace(d, recipient=Recipient("head@sonha.gov.vn", "Tran Van Nam", "en"))
    assert subject_of(en) == "[Sơn Hà] 3 units: 2 targets behind, 1 resolved"


# --- bodies ---------------------------------------------------------------------------------------


def test_body_is_alternative_plain_then_html_in_utf8() -> None:
    msg = parse(send(digest(item())))
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"


@pytest.mark.parametrize("part", [0, 1], ids=["plain", "html"])
def test_vietnamese_body_shows_every_figure(part: int) -> None:
    body = bodies(send(digest(item(escalation_level=1))))[part]
    for expected in [
        "Kính gửi Nguyễn Thị Hằng,",
        "Sở Nội vụ",
        "Tỷ lệ hồ sơ trực tuyến năm 2026",
        "mới chậm tiến độ",
        "chậm tiến độ",
        "72,5 %",  # actual
        "84,8 %",  # expected today
        "≥ 90,0 %",  # target
        "thiếu 12,3 điểm %",  # gap
        "17,5 điểm %",  # distance to the target
        "31/12/2026",  # deadline
        "81,0 % vào hạn hoàn thành; không đạt được theo xu hướng hiện tại",
        "+5,2 điểm %/năm",
        "08:30 ngày 28/11/2026 (giờ Việt Nam)",  # since, in local time
        "Đã quá hạn xử lý, báo cáo lên cấp trên (mức 1)",
        "QĐ 942/QĐ-TTg (15/6/2021): Chiến lược phát triển Chính phủ điện tử",
        "30/11/2026",  # data through: the period ends at local midnight of 1/12
        "Xem báo cáo của đơn vị",
        "10:00 ngày 01/12/2026",
        "Thư nhắc lại được gửi định kỳ chừng nào chỉ tiêu vẫn chậm tiến độ.",
    ]:
        assert expected in body, expected
    assert "72.5" not in body


def test_html_links_the_citation_and_report() -> None:
    _, html = bodies(send(digest(item())))
    assert '<a href="https://vanban.chinhphu.vn/?docid=203770"' in html
    assert ('<a href="https://egov.sonha.gov.vn/units/000.01.H99?as_of=2026-12-01&amp;tab=kpi"'
            ' style="color:#175cd3">Xem báo cáo của đơn vị</a>') in html


def test_html_has_no_external_assets() -> None:
    _, html = bodies(send(digest(item())))
    lowered = html.lower()
    for needle in ("<img", "<link", "<script", "<style", "src=", "url(", "@import"):
        assert needle not in lowered, needle


def test_html_escapes_every_value() -> None:
    d = digest(item(unit_name="Sở <script>alert(1)</script>", rule_title='Chỉ tiêu "A" & <b>B</b>',
                    citation_url="javascript:alert(2)", report_url=None))
    plain, html = bodies(send(d))
    assert "<script>" not in html
    assert "Sở &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Chỉ tiêu &#34;A&#34; &amp; &lt;b&gt;B&lt;/b&gt;" in html
    assert "javascript:" not in html  # not a link, and not echoed either
    assert "Xem báo cáo của đơn vị" not in html
    assert "Sở <script>alert(1)</script>" in plain  # plain text is not HTML


def test_english_digest_has_only_english_texts() -> None:
    en = Recipient("nam.tv@sonha.gov.vn", "Tran Van Nam", "en")
    english = dict(unit_name="Department of Home Affairs", kpi_name="Online dossier rate",
                   citation="Decision 942/QD-TTg (2021-06-15)")
    d = digest(item(**english, rule_title="Online dossiers 2026"),
               item(**english, rule="r2", rule_title="Full online services", gap=0.2),
               item(**english, rule="r3", rule_title="Digitised dossiers", kind="resolved", status="on_track",
                    gap=-0.03),
               recipient=en, province="Son Ha")
    data = send(d)
    msg = parse(data)
    assert msg["Subject"] == "[Son Ha] Department of Home Affairs: 2 targets behind, 1 resolved"
    assert msg["Content-Language"] == "en"
    plain, html = bodies(data)
    for body in (plain, unescape(html)):
        for expected in ["Dear Tran Van Nam,", "Department of Home Affairs", "72.5%", "84.8%", "≥ 90.0%",
                         "12.3 pts behind", "3.0 pts ahead", "2026-12-31", "2026-11-28 08:30 (Vietnam time)",
                         "+5.2 pts/year", "81.0% at the deadline; not reachable at the current trend",
                         "newly behind", "Resolved", "View the unit's report", "Data through"]:
            assert expected in body, expected
        for phrase in ["Kính gửi", "chậm tiến độ", "điểm %", "giờ Việt Nam", "đã khắc phục", "Xem báo cáo"]:
            assert phrase not in body, phrase
        vietnamese = [c for c in body if unicodedata.category(c).startswith("L") and ord(c) > 127]
        assert vietnamese == []


def test_resolved_items_come_after_the_items_needing_action() -> None:
    d = digest(item(rule="r3", rule_title="Tỷ lệ số hóa hồ sơ", kind="resolved", status="on_track", gap=-0.03),
               item(rule="r1", rule_title="Chỉ tiêu A", gap=0.05),
               item(rule="r2", rule_title="Chỉ tiêu B", kind="escalated", gap=0.25, escalation_level=1))
    plain, html = bodies(send(d))
    for body, heading in ((plain, "Đã khắc phục:"), (html, ">Đã khắc phục</h3>")):
        larger_gap, smaller_gap = body.index("Chỉ tiêu B"), body.index("Chỉ tiêu A")
        resolved_heading, resolved = body.index(heading), body.index("Tỷ lệ số hóa hồ sơ")
        assert larger_gap < smaller_gap < resolved_heading < resolved
    assert "vượt 3,0 điểm %" in plain
    assert "[đã khắc phục]" in plain


def test_units_are_sorted_by_vietnamese_name() -> None:
    d = digest(item(unit="u3", unit_name="UBND xã Tân Lập"), item(unit="u1", unit_name="Sở Nội vụ"),
               item(unit="u2", unit_name="Đài Phát thanh và Truyền hình"),
               item(unit="u4", unit_name="Ban Quản lý các khu công nghiệp"))
    plain, _ = bodies(send(d))
    positions = [plain.index(f"== {name} ==") for name in
                 ("Ban Quản lý các khu công nghiệp", "Đài Phát thanh và Truyền hình", "Sở Nội vụ", "UBND xã Tân Lập")]
    assert positions == sorted(positions)


def test_forecast_variants() -> None:
    reached = item(forecast_reachable=True, forecast_reached_on=date(2026, 9, 15), forecast_value=0.93)
    late = item(forecast_reachable=True, forecast_reached_on=date(2027, 3, 1), forecast_value=0.86)
    unknown = item(forecast_reachable=None, forecast_value=None, trend_per_year=None)
    assert "Dự báo: đạt mục tiêu vào khoảng 15/09/2026\n" in bodies(send(digest(reached)))[0]
    assert "Dự báo: đạt mục tiêu vào khoảng 01/03/2027, sau hạn hoàn thành\n" in bodies(send(digest(late)))[0]
    plain = bodies(send(digest(unknown)))[0]
    assert "Dự báo" not in plain and "Xu hướng" not in plain


def test_source_only_digest_for_the_operator() -> None:
    operator = Recipient("it@sonha.gov.vn", "Phòng CNTT", "vi")
    d = digest(recipient=operator, thread_key="operator:it@sonha.gov.vn",
               sources=(source(), source(kind="resolved", source="qlvb-sonha", source_kind="qlvb", problem="stale",
                                         detail="newest data 3 days old", inhibited=0)))
    data = send(d)
    msg = parse(data)
    assert msg["Subject"] == "[Sơn Hà] Nguồn dữ liệu: 1 nguồn lỗi, 1 nguồn đã hoạt động lại"
    plain, html = bodies(data)
    for body in (plain, html):
        for expected in ["dvc-sonha", "dvc_portal", "không truy cập được", "HTTP 503 from https://dichvucong.sonha.gov.vn/api",
                         "07:15 ngày 01/12/2026 (giờ Việt Nam)", "06:45 ngày 01/12/2026 (giờ Việt Nam)",
                         "3 cảnh báo chỉ tiêu đang được tạm giữ vì nguồn này.", "qlvb-sonha", "Đã hoạt động lại",
                         "người vận hành hệ thống giám sát"]:
            assert expected in body, expected
        assert "người đứng đầu đơn vị" not in body
    assert plain.index("dvc-sonha") < plain.index("Đã hoạt động lại:") < plain.index("qlvb-sonha")


def test_source_only_subject_in_english() -> None:
    d = digest(recipient=Recipient("it@sonha.gov.vn", None, "en"), sources=(source(),))
    assert subject_of(d) == "[Sơn Hà] Data sources: 1 down"
    plain, _ = bodies(send(d))
    assert plain.startswith("Dear colleague,\n")
    assert "3 target alerts held back because of this source." in plain


@pytest.mark.parametrize(("lang", "never"), [("vi", "chưa có"), ("en", "never")])
def test_a_source_that_never_succeeded_says_so(lang: str, never: str) -> None:
    d = digest(recipient=Recipient("it@sonha.gov.vn", None, lang), sources=(source(last_success_at=None),))
    plain, html = bodies(send(d))
    for body in (plain, html):
        assert never in body
        assert "06:45" not in body and ("07:15" in body)  # the outage's start is still shown


def test_footer_says_why_the_mail_came() -> None:
    head, _ = bodies(send(digest(item())))
    assert "Anh/Chị nhận thư này vì là người đứng đầu đơn vị có chỉ tiêu nêu trên." in head
    escalated, _ = bodies(send(digest(item(kind="escalated", escalation_level=2))))
    assert "quá hạn xử lý và được báo cáo lên cấp trên" in escalated
    assert "(mức 2)" in escalated
    assert "người đứng đầu đơn vị" not in escalated


def test_footer_follows_the_roles_the_mail_was_routed_by() -> None:
    copy, _ = bodies(send(replace(digest(item()), roles=("cc",))))
    assert "bản sao" in copy and "người đứng đầu đơn vị" not in copy
    both, _ = bodies(send(replace(digest(item()), roles=("escalation", "unit_head"))))
    assert "người đứng đầu đơn vị" in both and "báo cáo lên cấp trên" in both
