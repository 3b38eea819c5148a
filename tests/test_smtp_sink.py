"""The demo's SMTP sink speaks real SMTP and keeps Vietnamese intact."""

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from monitor.smtp_sink import SmtpSink


async def test_messages_become_eml_files(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path / "mail")
    await sink.start()
    try:
        message = EmailMessage()
        message["From"] = "Giám sát CQĐT <egovmon@sonha.gov.vn>"
        message["To"] = "Trần Thị Bình <binh@sonha.gov.vn>"
        message["Subject"] = "Sở Tư pháp: 2 chỉ tiêu chậm tiến độ"
        message.set_content("Tỷ lệ văn bản đi điện tử: 71,2 % (mục tiêu 100 %).")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=sink.port, timeout=10)
    finally:
        await sink.stop()
    (eml,) = (tmp_path / "mail").glob("*.eml")
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Sở Tư pháp: 2 chỉ tiêu chậm tiến độ"
    assert "71,2 %" in parsed.get_content()
    assert "Sở-Tư-pháp" in eml.name
