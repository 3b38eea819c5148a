"""A scheduled gap report as an email: a short summary in the body (text and
HTML: the status counts and the units furthest behind) and the full report
attached (XLSX by default). It goes through the alert outbox, keyed by schedule,
day and recipient, so a re-run or a restart never sends it twice."""

from __future__ import annotations

from email.message import EmailMessage
from html import escape

from monitor.alerts.compose import (
    format_gap,
    format_percent,
    message_headers,
    stable_boundary,
)
from monitor.alerts.model import Recipient
from monitor.reports.formats import Format, file_name
from monitor.reports.model import REPORT_STATUSES, GapReport, GapRow
from monitor.reports.names import STATUS_NAMES
from monitor.templating import format_day

TOP_ROWS = 10
TEXTS = {
    "vi": {"subject": "[{province}] Báo cáo khoảng cách mục tiêu — {scope}, {day}",
           "intro": "Kính gửi {name},\n\nBáo cáo tình hình thực hiện chỉ tiêu Chính phủ điện tử của {scope}, "
                    "tính đến {day}. Báo cáo đầy đủ ở tệp đính kèm.",
           "counts": "Số lượt đánh giá theo trạng thái", "worst": "Các đơn vị chậm nhất",
           "none": "Không có đơn vị nào chậm tiến độ.", "colleague": "Anh/Chị",
           "footer": "Thư gửi tự động theo lịch báo cáo \u201c{schedule}\u201d; vui lòng không trả lời thư này."},
    "en": {"subject": "[{province}] Target gap report — {scope}, {day}",
           "intro": "Dear {name},\n\nThe e-government target report for {scope} as of {day}. "
                    "The full report is attached.",
           "counts": "Evaluations by status", "worst": "Units furthest behind",
           "none": "No unit is behind.", "colleague": "colleague",
           "footer": "Sent automatically on the report schedule \u201c{schedule}\u201d; please do not reply."},
}


def worst_rows(report: GapReport, limit: int = TOP_ROWS) -> list[GapRow]:
    behind = [r for r in report.rows if r.status in ("missed", "behind") and r.gap is not None]
    return sorted(behind, key=lambda r: -(r.gap or 0.0))[:limit]


def report_message(report: GapReport, *, schedule: str, recipient: Recipient, sender: str, domain: str,
                   message_key: str, attachments: list[tuple[Format, bytes]]) -> EmailMessage:
    lang = report.language
    t = TEXTS[lang]
    day = format_day(report.as_of_day, lang)
    subject = t["subject"].format(province=report.province, scope=report.scope_name, day=day)
    msg = message_headers(sender=sender, recipient=recipient, subject=subject, created_at=report.generated_at,
                          domain=domain, message_key=message_key, thread_key=f"report:{schedule}")
    name = recipient.name or t["colleague"]
    intro = t["intro"].format(name=name, scope=report.scope_name, day=day)
    worst = worst_rows(report)
    counts = [(STATUS_NAMES[lang].get(s, s), report.status_counts.get(s, 0)) for s in REPORT_STATUSES]
    titles = {s.rule: s.title for s in report.targets}
    text = [intro, "", t["counts"] + ":"] + [f"  {label}: {n}" for label, n in counts] + ["", t["worst"] + ":"]
    text += [f"  {r.unit_name} — {titles.get(r.rule, r.rule)}: {format_percent(r.actual, lang)} "
             f"({format_gap(r.gap, lang)})" for r in worst] or ["  " + t["none"]]
    text += ["", t["footer"].format(schedule=schedule)]
    msg.set_content("\n".join(text) + "\n", subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(_html(report, intro, counts, worst, titles, t, schedule), subtype="html",
                        charset="utf-8", cte="quoted-printable")
    for fmt, body in attachments:
        maintype, _, subtype = fmt.content_type.partition(";")[0].partition("/")
        msg.add_attachment(body, maintype=maintype, subtype=subtype, filename=file_name(report, fmt))
    stable_boundary(msg, message_key)
    msg["Content-Language"] = lang
    return msg


def _html(report: GapReport, intro: str, counts: list[tuple[str, int]], worst: list[GapRow],
          titles: dict[str, str], t: dict[str, str], schedule: str) -> str:
    lang = report.language
    paragraphs = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in intro.split("\n\n"))
    count_rows = "".join(f"<tr><td>{escape(label)}</td><td style=\"text-align:right\">{n}</td></tr>"
                         for label, n in counts)
    worst_rows_html = "".join(
        f"<tr><td>{escape(r.unit_name)}</td><td>{escape(titles.get(r.rule, r.rule))}</td>"
        f"<td style=\"text-align:right\">{escape(format_percent(r.actual, lang))}</td>"
        f"<td style=\"text-align:right\">{escape(format_gap(r.gap, lang))}</td></tr>" for r in worst)
    worst_html = (f"<table style=\"border-collapse:collapse\">{worst_rows_html}</table>" if worst
                  else f"<p>{escape(t['none'])}</p>")
    return (f"<!DOCTYPE html><html lang=\"{lang}\"><body style=\"font-family:sans-serif\">{paragraphs}"
            f"<h3>{escape(t['counts'])}</h3><table>{count_rows}</table>"
            f"<h3>{escape(t['worst'])}</h3>{worst_html}"
            f"<p style=\"color:#666\">{escape(t['footer'].format(schedule=schedule))}</p></body></html>")
