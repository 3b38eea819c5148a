"""edXML envelopes built to QCVN 102:2016's structure, and hostile files, for the edxml tests.

The layout follows the VNPT VXP SDK's sample (``edoc_new.edxml``): a root
``edXML`` in the default namespace, everything below it with the ``edXML:``
prefix, a ``MessageHeader`` (From, To…, DocumentId, Code, PromulgationInfo,
DocumentType, Subject, SignerInfo), a ``TraceHeaderList``, then either a
W3C ``Signature`` or an empty ``edXML:DigitalSignature``, the manifest and
the base64 attachments.
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from xml.sax.saxutils import escape

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS = "http://www.w3.org/2000/09/xmldsig#"


@dataclass(frozen=True)
class Doc:
    """One e-document as the test means it; ``xml()`` writes its envelope."""

    sender: str
    receivers: tuple[str, ...]
    promulgated: date
    number: int
    signed: bool
    notation: str = "UBND-VP"
    sent_at: datetime | None = None  # the first trace hop; default promulgation day 09:30
    signature: str = "xmldsig"  # or "sdk": the SDK's un-namespaced <Signature> in the edXML namespace
    document_id: str | None = None  # default the standard's "<sender>,<YYYY/MM/DD>,<số>/<ký hiệu>"
    omit: frozenset[str] = field(default_factory=frozenset)  # elements to leave out: "From", "PromulgationDate"
    prefixed_root: bool = False  # root written as edXML:edXML instead of in the default namespace

    @property
    def key(self) -> str:
        if self.document_id is not None:
            return self.document_id
        return f"{self.sender},{self.promulgated:%Y/%m/%d},{self.number}/{self.notation}"

    def xml(self) -> bytes:
        return envelope_xml(self).encode("utf-8")


def _organ(tag: str, code: str, name: str) -> str:
    return (f"<edXML:{tag}><edXML:OrganId>{escape(code)}</edXML:OrganId>"
            f"<edXML:OrganizationInCharge>{escape(name)}</edXML:OrganizationInCharge>"
            f"<edXML:OrganName>{escape(name)}</edXML:OrganName><edXML:OrganAdd>Số 1 Trần Phú</edXML:OrganAdd>"
            f"<edXML:Email>vanthu@sonha.gov.vn</edXML:Email><edXML:Telephone>0203 3852 123</edXML:Telephone>"
            f"<edXML:Fax>0203 3852 124</edXML:Fax><edXML:Website>sonha.gov.vn</edXML:Website></edXML:{tag}>")


def _signature(doc: Doc) -> str:
    if not doc.signed:
        return "<edXML:DigitalSignature/>"
    value = base64.b64encode(random.Random(doc.key).randbytes(256)).decode()
    xmlns = f' xmlns="{DS}"' if doc.signature == "xmldsig" else ""
    return (f"<Signature{xmlns}><SignedInfo>"
            '<CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>'
            '<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
            '<Reference URI=""><Transforms>'
            '<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/></Transforms>'
            '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
            "<DigestValue>q1w2e3r4t5y6u7i8o9p0q1w2e3r4t5y6u7i8o9p0qwe=</DigestValue></Reference></SignedInfo>"
            f"<SignatureValue>{value}</SignatureValue><KeyInfo><X509Data>"
            "<X509SubjectName>CN=Văn thư UBND tỉnh Sơn Hà</X509SubjectName>"
            "<X509Certificate>MIIFqTCCBJGgAwIBAgIQVGVzdA==</X509Certificate></X509Data></KeyInfo></Signature>")


def envelope_xml(doc: Doc) -> str:
    sent = doc.sent_at or datetime.combine(doc.promulgated, datetime.min.time()) + timedelta(hours=9, minutes=30)
    sender = "" if "From" in doc.omit else _organ("From", doc.sender, f"Đơn vị {doc.sender}")
    receivers = "".join(_organ("To", code, f"Đơn vị {code}") for code in doc.receivers)
    promulgation = "" if "PromulgationDate" in doc.omit else (
        f"<edXML:PromulgationDate>{doc.promulgated:%Y/%m/%d}</edXML:PromulgationDate>")
    document_id = "" if "DocumentId" in doc.omit else f"<edXML:DocumentId>{escape(doc.key)}</edXML:DocumentId>"
    root_open = (f'<edXML:edXML xmlns:edXML="{NS}">' if doc.prefixed_root else f'<edXML xmlns="{NS}">')
    root_close = "</edXML:edXML>" if doc.prefixed_root else "</edXML>"
    attachment = base64.b64encode(f"Nội dung văn bản số {doc.number}".encode()).decode()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"{root_open}<edXML:edXMLEnvelope xmlns:edXML=\"{NS}\"><edXML:edXMLHeader><edXML:MessageHeader>"
        f"{sender}{receivers}{document_id}"
        f"<edXML:Code><edXML:CodeNumber>{doc.number}</edXML:CodeNumber>"
        f"<edXML:CodeNotation>{escape(doc.notation)}</edXML:CodeNotation></edXML:Code>"
        f"<edXML:PromulgationInfo><edXML:Place>Sơn Hà</edXML:Place>{promulgation}</edXML:PromulgationInfo>"
        "<edXML:DocumentType><edXML:Type>1</edXML:Type><edXML:TypeDetail>0</edXML:TypeDetail>"
        "<edXML:TypeName>Công văn</edXML:TypeName></edXML:DocumentType>"
        "<edXML:Subject>V/v báo cáo tình hình ứng dụng CNTT</edXML:Subject>"
        "<edXML:Content>V/v báo cáo tình hình ứng dụng CNTT</edXML:Content>"
        "<edXML:SignerInfo><edXML:Competence>KT. CHỦ TỊCH</edXML:Competence>"
        "<edXML:Position>Phó Chủ tịch</edXML:Position><edXML:FullName>Nguyễn Văn A</edXML:FullName>"
        "</edXML:SignerInfo><edXML:SteeringType>1</edXML:SteeringType></edXML:MessageHeader>"
        "<edXML:TraceHeaderList><edXML:TraceHeader>"
        f"<edXML:OrganId>{escape(doc.sender)}</edXML:OrganId>"
        f"<edXML:Timestamp>{sent:%Y/%m/%d %H:%M:%S}</edXML:Timestamp></edXML:TraceHeader>"
        f"<edXML:Bussiness><edXML:DocumentId>{escape(doc.key)}</edXML:DocumentId>"
        "<edXML:BussinessDocType>0</edXML:BussinessDocType>"
        "<edXML:BussinessDocReason>Văn bản điện tử mới</edXML:BussinessDocReason>"
        "<edXML:Paper>0</edXML:Paper></edXML:Bussiness></edXML:TraceHeaderList>"
        f"{_signature(doc)}</edXML:edXMLHeader>"
        '<edXML:edXMLBody><edXML:edXMLManifest version="1.0"><edXML:Reference>'
        f"<edXML:ContentId>cid:{doc.number}</edXML:ContentId><edXML:ContentType>application/pdf</edXML:ContentType>"
        f"<edXML:AttachmentName>{doc.number}.pdf</edXML:AttachmentName></edXML:Reference></edXML:edXMLManifest>"
        "</edXML:edXMLBody></edXML:edXMLEnvelope>"
        f"<AttachmentEncoded><Attachment><ContentId>cid:{doc.number}</ContentId>"
        f"<AttachmentName>{doc.number}.pdf</AttachmentName><ContentType>application/pdf</ContentType>"
        f"<edXML:ContentTransferEncoded xmlns:edXML=\"{NS}\">{attachment}</edXML:ContentTransferEncoded>"
        f"</Attachment></AttachmentEncoded>{root_close}\n")


def random_docs(rng: random.Random, senders: list[str], receivers: list[str], first: date, last: date,
                count: int) -> list[Doc]:
    """``count`` documents with random parties, days in ``first..last``, signatures and styles."""
    span = (last - first).days
    docs = []
    for number in range(1, count + 1):
        sender = rng.choice(senders)
        to = tuple(rng.sample([r for r in receivers if r != sender], rng.randint(1, 3)))
        docs.append(Doc(sender, to, first + timedelta(days=rng.randint(0, span)), number,
                        signed=rng.random() < 0.7, signature=rng.choice(["xmldsig", "sdk"]),
                        prefixed_root=rng.random() < 0.3))
    return docs


def tally(docs: Iterable[Doc], label: Callable[[date], str]) -> dict[tuple[str, str], dict[str, int]]:
    """(unit, period label) → role → count, for each document once (first copy of a key)."""
    sent: Counter[tuple[str, str]] = Counter()
    signed: Counter[tuple[str, str]] = Counter()
    received: Counter[tuple[str, str]] = Counter()
    seen: set[str] = set()
    for doc in docs:
        if doc.key in seen:
            continue
        seen.add(doc.key)
        period = label(doc.promulgated)
        sent[(doc.sender, period)] += 1
        signed[(doc.sender, period)] += int(doc.signed)
        for receiver in set(doc.receivers):
            received[(receiver, period)] += 1
    keys = set(sent) | set(received)
    return {key: {"sent": sent[key], "signed": signed[key], "received": received[key]} for key in keys}


# ----------------------------------------------------------------------------- hostile files

def billion_laughs() -> bytes:
    """Ten levels of ten: 10⁹ 'lol's if a parser expanded the entities."""
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return (f'<?xml version="1.0"?>\n<!DOCTYPE edXML [{"".join(entities)}]>\n'
            f'<edXML xmlns="{NS}"><edXML:edXMLEnvelope xmlns:edXML="{NS}"><edXML:edXMLHeader>'
            "<edXML:MessageHeader><edXML:From><edXML:OrganId>&lol9;</edXML:OrganId></edXML:From>"
            "</edXML:MessageHeader></edXML:edXMLHeader></edXML:edXMLEnvelope></edXML>").encode()


def external_entity(system_id: str, base: Doc) -> bytes:
    """``base``'s envelope with its sender replaced by an external entity read from ``system_id``."""
    text = envelope_xml(base)
    head, _, body = text.partition("\n")
    body = body.replace(f"<edXML:OrganId>{base.sender}</edXML:OrganId>", "<edXML:OrganId>&secret;</edXML:OrganId>", 1)
    return f'{head}\n<!DOCTYPE edXML [<!ENTITY secret SYSTEM "{system_id}">]>\n{body}'.encode()


def external_dtd(system_id: str, base: Doc) -> bytes:
    """``base``'s envelope declaring an external DTD at ``system_id`` (parameter-entity tricks live there)."""
    head, _, body = envelope_xml(base).partition("\n")
    return f'{head}\n<!DOCTYPE edXML SYSTEM "{system_id}">\n{body}'.encode()


def copy_of(doc: Doc, **changes: object) -> Doc:
    return replace(doc, **changes)  # type: ignore[arg-type]
