"""LdapDirectoryCollector against a real OpenLDAP slapd on 127.0.0.1.

The directory holds 120 random Zimbra accounts in three unit OUs. Every
expected count is recomputed here from the accounts as generated (their true
logon instants), never from what the collector parsed. slapd refuses plain
searches beyond 50 entries, so reading all 120 proves the paged-results
control was used page after page.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from collectors import (
    CollectionResult,
    Credentials,
    MalformedPayload,
    SourceAuthError,
    SourceRequestError,
    SourceSettings,
    SourceTimeout,
    SourceUnavailable,
)
from collectors.http import SourceHttp, new_session
from collectors.ldap_directory import LdapDirectoryCollector
from collectors.mailboxes import generalized_time
from monitor.config import load_config
from monitor.service import MonitorService
from monitor.timeutil import FrozenClock, Period
from monitor.windows import Window
from tests.collectors.conftest import TZ
from tests.support.components import free_port
from tests.support.slapd import SlapdServer, require_slapd

SCHEMA = Path(__file__).parent / "data" / "ldap_directory" / "zimbra-min.schema"
SUFFIX = "dc=sonha,dc=gov,dc=vn"
PEOPLE = f"ou=people,{SUFFIX}"
BIND_DN = f"uid=egovmon,ou=services,{SUFFIX}"
PASSWORD = "mật-khẩu-không-được-lộ"  # must never appear in an error message
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 10:00 in Hanoi
SIZE_LIMIT = 50
PAGE_SIZE = 25
UNITS = {"000.00.01.H99": "Văn phòng UBND tỉnh", "000.00.02.H99": "Sở Nội vụ", "000.00.03.H99": "Sở Tài chính"}
STATUSES = ["active"] * 6 + ["locked", "lockout", "closed", "maintenance", "pending"]
FORMS = ("%Y%m%d%H%M%SZ", "%Y%m%d%H%M%S.000Z", "local")  # as Zimbra writes it, and what slapd also accepts


@dataclass(frozen=True)
class Account:
    uid: str
    unit: str
    status: str
    logon: datetime | None  # the truth the test counts from
    form: str

    @property
    def dn(self) -> str:
        return f"uid={self.uid},ou={self.unit},{PEOPLE}"

    def timestamp(self) -> str:
        assert self.logon is not None
        if self.form == "local":  # the same instant written with Hanoi's offset
            return self.logon.astimezone(TZ).strftime("%Y%m%d%H%M%S+0700")
        return self.logon.strftime(self.form)


def random_accounts(count: int = 120, seed: int = 942) -> list[Account]:
    rng = random.Random(seed)
    accounts = []
    for n in range(count):
        logon = None
        if rng.random() > 0.15:  # the rest never logged in
            # Whole seconds, never within a second of the 30-day cutoff.
            seconds = rng.choice([rng.randint(60, 29 * 86400), rng.randint(31 * 86400, 400 * 86400)])
            logon = NOW - timedelta(seconds=seconds)
        accounts.append(Account(f"cb{n:03d}", rng.choice(sorted(UNITS)), rng.choice(STATUSES), logon,
                                rng.choice(FORMS)))
    return accounts


def expected_counts(accounts: list[Account], units: set[str] | None = None,
                    days: int = 30) -> dict[str, tuple[float, float]]:
    """Unit → (active accounts, of which logged on within ``days`` of NOW), counted by hand."""
    table: dict[str, list[int]] = {}
    for a in accounts:
        if units is not None and a.unit not in units:
            continue
        row = table.setdefault(a.unit, [0, 0])
        active = a.status == "active"
        row[0] += active
        row[1] += active and a.logon is not None and a.logon >= NOW - timedelta(days=days)
    return {unit: (float(t), float(r)) for unit, (t, r) in table.items()}


def ldif(accounts: list[Account], timestamp: Any = None) -> str:
    blocks = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: sonha\no: Tỉnh Sơn Hà",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {BIND_DN}\nobjectClass: account\nobjectClass: simpleSecurityObject\nuid: egovmon\n"
        f"userPassword: {PASSWORD}",
    ]
    blocks += [f"dn: ou={unit},{PEOPLE}\nobjectClass: organizationalUnit\nou: {unit}" for unit in sorted(UNITS)]
    for a in accounts:
        lines = [f"dn: {a.dn}", "objectClass: inetOrgPerson", "objectClass: zimbraAccount", f"uid: {a.uid}",
                 f"cn: {a.uid}", "sn: Nguyễn", f"mail: {a.uid}@sonha.gov.vn", f"departmentNumber: {UNITS[a.unit]}",
                 f"zimbraAccountStatus: {a.status}"]
        value = timestamp(a) if timestamp is not None else (a.timestamp() if a.logon else None)
        if value is not None:
            lines.append(f"zimbraLastLogonTimestamp: {value}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


# ----------------------------------------------------------------------------- fixtures

ACCOUNTS = random_accounts()


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    require_slapd()
    with SlapdServer(ldif(ACCOUNTS), suffix=SUFFIX, schemas=[SCHEMA], size_limit=SIZE_LIMIT) as server:
        yield server


async def collect(url: str, *, options: dict[str, Any] | None = None, units: set[str] | None = None,
                  credentials: Credentials | None = None, source_timeout: float = 5.0) -> CollectionResult:
    settings = SourceSettings(
        id="thu-ldap", kind="ldap_directory", url=url, grain="day",
        # every entry's fate is checked here, so no snapshot is refused for its share of rejections
        options={"base_dn": PEOPLE, "page_size": PAGE_SIZE, "max_rejected_share": 1, **(options or {})},
        credentials=credentials or Credentials("basic", BIND_DN, PASSWORD), timeout=source_timeout)
    # Every collector is handed an HTTP client; this kind never uses it.
    async with new_session() as session:
        collector = LdapDirectoryCollector(settings, SourceHttp(settings.id, "http://127.0.0.1:9", session),
                                           TZ, FrozenClock(NOW))
        try:
            return await collector.collect([Period.containing(NOW, "day", TZ)], units or set(UNITS))
        finally:
            await collector.aclose()


def counts(result: CollectionResult) -> dict[str, tuple[float, float]]:
    table: dict[str, dict[str, float]] = {}
    for obs in result.observations:
        table.setdefault(obs.unit, {})[obs.measure] = obs.value
    return {unit: (m["email_accounts_total"], m["email_accounts_regular_use"]) for unit, m in table.items()}


# ----------------------------------------------------------------------------- reading

def test_the_server_refuses_a_plain_search_beyond_its_size_limit(slapd: SlapdServer) -> None:
    """The premise of the paging test: unpaged, this bind DN gets at most SIZE_LIMIT entries."""
    outcome, returned = slapd.plain_search(BIND_DN, PASSWORD, PEOPLE, "(objectClass=zimbraAccount)")
    assert outcome == "sizeLimitExceeded"
    assert returned == SIZE_LIMIT < len(ACCOUNTS)


async def test_counts_equal_the_loaded_accounts_read_page_by_page(slapd: SlapdServer) -> None:
    result = await collect(slapd.ldap_url)
    assert result.rejections == []
    assert counts(result) == expected_counts(ACCOUNTS)
    pages = math.ceil(len(ACCOUNTS) / PAGE_SIZE)
    assert pages > 1
    refs = {obs.raw_ref for obs in result.observations}
    assert refs == {f"{slapd.ldap_url}/{PEOPLE}?sub?(objectClass=zimbraAccount): {len(ACCOUNTS)} entries "
                    f"in {pages} pages as of 2026-11-22T03:00:00Z"}
    assert {obs.period for obs in result.observations} == {Period.containing(NOW, "day", TZ)}


async def test_a_directory_that_stops_paging_fails_the_run_rather_than_undercounts() -> None:
    """OpenLDAP's default: a paged search, too, ends at the hard size limit."""
    require_slapd()
    with (SlapdServer(ldif(ACCOUNTS), suffix=SUFFIX, schemas=[SCHEMA], size_limit=SIZE_LIMIT,
                      paged_total="hard") as server,
          pytest.raises(SourceRequestError) as caught):
        await collect(server.ldap_url)
    message = caught.value.message
    assert f"stopped the search after {SIZE_LIMIT} entries: sizeLimitExceeded" in message
    assert "nothing was counted" in message and "size.prtotal=unlimited" in message


async def test_the_window_follows_the_option(slapd: SlapdServer) -> None:
    result = await collect(slapd.ldap_url, options={"regular_use_days": 90})
    assert counts(result) == expected_counts(ACCOUNTS, days=90)
    assert counts(result) != expected_counts(ACCOUNTS)  # the data does tell 30 from 90 days


async def test_units_from_an_attribute_through_a_map(slapd: SlapdServer) -> None:
    result = await collect(slapd.ldap_url, options={
        "unit_from": "attribute", "unit_attribute": "departmentNumber",
        "unit_map": {name: code for code, name in UNITS.items()}})
    assert result.rejections == []
    assert counts(result) == expected_counts(ACCOUNTS)


async def test_an_unknown_unit_rejects_its_active_accounts_by_dn(slapd: SlapdServer) -> None:
    dropped = "000.00.02.H99"
    known = set(UNITS) - {dropped}
    result = await collect(slapd.ldap_url, units=known)
    assert counts(result) == expected_counts(ACCOUNTS, known)
    active_dropped = sorted(a.dn for a in ACCOUNTS if a.unit == dropped and a.status == "active")
    assert active_dropped
    assert sorted(r.raw_ref or "" for r in result.rejections) == sorted(
        f"{slapd.ldap_url}/{dn}" for dn in active_dropped)
    assert {r.reason for r in result.rejections} == {"unknown_unit"}
    assert all(f"ou (level 1 below {PEOPLE}) = '{dropped}' is not a unit of the tree" in r.detail
               for r in result.rejections)


async def test_an_ou_level_no_dn_has_fails_the_run(slapd: SlapdServer) -> None:
    with pytest.raises(MalformedPayload) as caught:
        await collect(slapd.ldap_url, options={"ou_level": 2})
    assert f"none of the {len(ACCOUNTS)} entries has an ou at level 2" in caught.value.message


async def test_an_ou_level_counted_from_a_higher_base(slapd: SlapdServer) -> None:
    result = await collect(slapd.ldap_url, options={"base_dn": SUFFIX, "ou_level": 2})
    assert counts(result) == expected_counts(ACCOUNTS)


# ----------------------------------------------------------------------------- TLS

async def test_ldaps_with_the_ca(slapd: SlapdServer) -> None:
    result = await collect(slapd.ldaps_url, options={"ca_file": str(slapd.ca_file)})
    assert counts(result) == expected_counts(ACCOUNTS)


async def test_start_tls_with_the_ca(slapd: SlapdServer) -> None:
    result = await collect(slapd.ldap_url, options={"start_tls": True, "ca_file": str(slapd.ca_file)})
    assert counts(result) == expected_counts(ACCOUNTS)


@pytest.mark.parametrize("tls", ["ldaps", "start_tls"])
async def test_tls_without_the_ca_is_not_trusted(slapd: SlapdServer, tls: str) -> None:
    url = slapd.ldaps_url if tls == "ldaps" else slapd.ldap_url
    with pytest.raises(SourceUnavailable) as caught:
        await collect(url, options={"start_tls": tls == "start_tls"})
    message = caught.value.message
    assert "certificate is not trusted" in message and "set options.ca_file" in message
    assert PASSWORD not in str(caught.value)


async def test_a_certificate_for_another_name_is_refused(slapd: SlapdServer) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        await collect(f"ldaps://localhost:{slapd.tls_port}", options={"ca_file": str(slapd.ca_file)})
    assert "the certificate does not name this host" in caught.value.message
    assert "localhost" in caught.value.message


# ----------------------------------------------------------------------------- failures

async def test_a_wrong_password_is_an_auth_error_without_the_password(slapd: SlapdServer) -> None:
    wrong = "sai-" + PASSWORD
    with pytest.raises(SourceAuthError) as caught:
        await collect(slapd.ldap_url, credentials=Credentials("basic", BIND_DN, wrong))
    assert caught.value.permanent
    assert f"bind as {BIND_DN} refused: invalidCredentials" in caught.value.message
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)


async def test_anonymous_may_not_read_the_accounts_and_is_told(slapd: SlapdServer) -> None:
    with pytest.raises(SourceRequestError) as caught:
        await collect(slapd.ldap_url, credentials=Credentials())
    assert f"base_dn {PEOPLE} not found: it does not exist, or anonymous may not read it" in caught.value.message


async def test_a_missing_base_dn_is_named(slapd: SlapdServer) -> None:
    with pytest.raises(SourceRequestError) as caught:
        await collect(slapd.ldap_url, options={"base_dn": f"ou=staff,{SUFFIX}"})
    assert f"base_dn ou=staff,{SUFFIX} not found: it does not exist, or {BIND_DN} may not" in caught.value.message


async def test_a_filter_that_selects_nothing_fails_the_run(slapd: SlapdServer) -> None:
    with pytest.raises(SourceRequestError) as caught:
        await collect(slapd.ldap_url, options={"filter": "(zimbraAccountStatus=archived)"})
    assert f"the search found no entries under {PEOPLE} with filter (zimbraAccountStatus=archived)" in (
        caught.value.message)


async def test_a_server_that_is_down_is_unavailable() -> None:
    with pytest.raises(SourceUnavailable) as caught:
        await collect(f"ldap://127.0.0.1:{free_port()}", source_timeout=2.0)
    assert PASSWORD not in str(caught.value)


async def test_a_server_that_never_answers_times_out() -> None:
    """A listener that accepts and stays silent: the read is bounded by the source's timeout."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SourceTimeout) as caught:
            await asyncio.wait_for(collect(f"ldap://127.0.0.1:{port}", source_timeout=1.0), 15)
        assert "did not answer within 1s" in caught.value.message
    finally:
        silent.close()
        await silent.wait_closed()


# ----------------------------------------------------------------------------- malformed values

def lax_schema(tmp_path: Path) -> Path:
    """The test schema with the timestamp as a plain string: what a hand-made or migrated schema
    lets through, and the only way a malformed value reaches the wire (slapd checks real syntax)."""
    text = SCHEMA.read_text(encoding="utf-8")
    text = text.replace("EQUALITY generalizedTimeMatch\n\tORDERING generalizedTimeOrderingMatch\n"
                        "\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.24",
                        "EQUALITY caseIgnoreMatch\n\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.15")
    assert "121.1.24" not in text
    path = tmp_path / "zimbra-lax.schema"
    path.write_text(text, encoding="utf-8")
    return path


async def test_unreadable_entries_are_rejected_by_dn_the_rest_counts(tmp_path: Path) -> None:
    require_slapd()
    accounts = random_accounts(30, seed=7)
    broken = {a.uid: "2026-11-20T01:30:00Z" for a in accounts[::7]}
    loaded = ldif(accounts, lambda a: broken.get(a.uid) or (a.timestamp() if a.logon else None))
    outside = f"uid=lac.loai,{PEOPLE}"  # an account right under ou=people: no unit OU in its DN
    loaded += (f"\ndn: {outside}\nobjectClass: inetOrgPerson\nobjectClass: zimbraAccount\nuid: lac.loai\n"
               "cn: lac.loai\nsn: Lạc\nzimbraAccountStatus: active\n")
    with SlapdServer(loaded, suffix=SUFFIX, schemas=[lax_schema(tmp_path)]) as server:
        result = await collect(server.ldap_url)
    by_reason: dict[str, list[str]] = {}
    for r in result.rejections:
        by_reason.setdefault(r.reason, []).append(r.raw_ref or "")
    bad = [a for a in accounts if a.uid in broken]
    assert sorted(by_reason["schema"]) == sorted(f"{server.ldap_url}/{a.dn}" for a in bad)
    assert by_reason["no_unit"] == [f"{server.ldap_url}/{outside}"]
    assert set(by_reason) == {"schema", "no_unit"}
    details = {r.reason: r.detail for r in result.rejections}
    assert "field zimbraLastLogonTimestamp: expected LDAP generalized time" in details["schema"]
    assert "'2026-11-20T01:30:00Z'" in details["schema"]
    assert f"its DN has no ou at level 1 below {PEOPLE}" in details["no_unit"]
    good = [a for a in accounts if a.uid not in broken]
    assert counts(result) == expected_counts(good)


@pytest.mark.parametrize(("text", "instant"), [
    ("20261120013000Z", datetime(2026, 11, 20, 1, 30, tzinfo=UTC)),
    ("20261120013000.000Z", datetime(2026, 11, 20, 1, 30, tzinfo=UTC)),
    ("20261120013000.5Z", datetime(2026, 11, 20, 1, 30, 0, 500000, tzinfo=UTC)),
    ("20261120083000+0700", datetime(2026, 11, 20, 1, 30, tzinfo=UTC)),
    ("20261119203000-05", datetime(2026, 11, 20, 1, 30, tzinfo=UTC)),
    ("202611200130Z", datetime(2026, 11, 20, 1, 30, tzinfo=UTC)),
    ("2026112001Z", datetime(2026, 11, 20, 1, 0, tzinfo=UTC)),
    ("2026112001.5Z", datetime(2026, 11, 20, 1, 30, tzinfo=UTC)),  # a fraction of the hour
    ("20261231235960Z", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),  # a leap second
])
def test_generalized_time_forms_are_read(text: str, instant: datetime) -> None:
    assert generalized_time(text) == instant


def test_zimbra_form_is_read_as_strptime_reads_it() -> None:
    """Zimbra's own 15-character form takes a fast path; strptime is the independent oracle."""
    rng = random.Random(7)
    for _ in range(2000):
        instant = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(40 * 365 * 86400))
        text = instant.strftime("%Y%m%d%H%M%SZ")
        assert generalized_time(text) == datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-11-20T01:30:00Z", "20261120013000", "20261320013000Z", "",
                                  "20260230013000Z", "20261120243000Z", "20261120016000Z"])
def test_other_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected LDAP generalized time"):
        generalized_time(text)


# ----------------------------------------------------------------------------- options

def test_options_defaults() -> None:
    options = LdapDirectoryCollector.Options.model_validate({"base_dn": PEOPLE})
    assert options.model_dump() == {
        "base_dn": PEOPLE, "filter": "(objectClass=zimbraAccount)", "unit_from": "ou", "ou_level": 1,
        "unit_attribute": None, "unit_map": {}, "page_size": 500, "start_tls": False, "ca_file": None,
        "verify": True, "regular_use_days": 30, "logon_frequency_days": 7, "max_rejected_share": 0.05}


@pytest.mark.parametrize(("options", "message"), [
    ({"regular_use_days": 3}, "regular_use_days must be at least logon_frequency_days (7), got: 3"),
    ({"filter": "(objectClass=zimbraAccount"}, "not an LDAP filter: '(objectClass=zimbraAccount'"),
    ({"base_dn": "people"}, "not a DN"),
    ({"unit_from": "attribute"}, "unit_from: attribute needs unit_attribute"),
    ({"unit_attribute": "departmentNumber"}, "unit_attribute (departmentNumber) is read only with unit_from"),
    ({"page_size": 0}, "greater than or equal to 1"),
    ({"pagesize": 10}, "Extra inputs are not permitted"),
])
def test_bad_options_are_explained(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        LdapDirectoryCollector.Options.model_validate({"base_dn": PEOPLE, **options})
    assert message in str(caught.value)


def test_urls_of_other_schemes_are_refused() -> None:
    assert LdapDirectoryCollector.accepts_url("ldaps://mail.sonha.gov.vn")
    assert LdapDirectoryCollector.accepts_url("LDAP://10.0.0.5:389")
    assert not LdapDirectoryCollector.accepts_url("https://mail.sonha.gov.vn")


# ----------------------------------------------------------------------------- end to end

def write_monitor_config(directory: Path, slapd: SlapdServer) -> Path:
    units: list[dict[str, Any]] = [
        {"code": "000.00.00.H99", "name": "UBND tỉnh Sơn Hà", "level": "province", "group": "tinh"}]
    units += [{"code": code, "name": name, "level": "department", "group": "so_nganh", "parent": "000.00.00.H99",
               "staff_count": 50} for code, name in sorted(UNITS.items())]
    (directory / "units.yaml").write_text(yaml.safe_dump({"version": 1, "units": units}, allow_unicode=True),
                                          encoding="utf-8")
    (directory / "ldap-password").write_text(PASSWORD + "\n", encoding="utf-8")
    source = {"id": "thu-cong-vu-ldap", "kind": "ldap_directory", "url": slapd.ldaps_url, "timeout": "5s",
              "auth": {"type": "basic", "username": BIND_DN, "password_file": "ldap-password"},
              "options": {"base_dn": PEOPLE, "page_size": PAGE_SIZE, "ca_file": str(slapd.ca_file),
                          "regular_use_days": 30, "logon_frequency_days": 7}}
    data = {"version": 1, "province": {"name": "Tỉnh Sơn Hà", "code": "000.00.00.H99"},
            "database": {"url": "sqlite:///egovmon.db"}, "http": {"listen": "127.0.0.1:0"},
            "units": {"file": "units.yaml"}, "sources": [source], "alerts": {"enabled": False},
            "rules": {"shipped": []}}
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def test_end_to_end_the_regular_use_rate_is_the_hand_computed_one(
    slapd: SlapdServer, tmp_path: Path,
) -> None:
    config = load_config(write_monitor_config(tmp_path, slapd))
    service = MonitorService(config, clock=FrozenClock(NOW))
    service.prepare()
    try:
        summary = await service.runner.collect("thu-cong-vu-ldap")
        assert summary.ok, summary.error
        values = service.kpis.compute(NOW, [Window.parse("latest")], kpis=["official_email_regular_use_rate"])
    finally:
        await service.aclose()
    by_unit = {v.unit: v for v in values}
    active = sum(a.status == "active" for a in ACCOUNTS)
    regular = sum(a.status == "active" and a.logon is not None and a.logon >= NOW - timedelta(days=30)
                  for a in ACCOUNTS)
    province = by_unit["000.00.00.H99"]
    assert (province.numerator, province.denominator) == (regular, active)
    assert province.value == pytest.approx(regular / active)
    assert province.units_reporting == len(UNITS)
    for code in UNITS:
        mine = [a for a in ACCOUNTS if a.unit == code]
        assert (by_unit[code].numerator, by_unit[code].denominator) == expected_counts(mine)[code][::-1]


async def test_dry_run_previews_and_stores_nothing(slapd: SlapdServer, tmp_path: Path) -> None:
    config = load_config(write_monitor_config(tmp_path, slapd))
    service = MonitorService(config, clock=FrozenClock(NOW))
    service.prepare()
    try:
        summary = await service.runner.collect("thu-cong-vu-ldap", dry_run=True)
        stored = service.store.count_observations()
    finally:
        await service.aclose()
    assert summary.ok and stored == 0
    preview = {(o.unit, o.measure): o.value for o in summary.preview}
    assert preview == {(unit, measure): value for unit, pair in expected_counts(ACCOUNTS).items()
                       for measure, value in zip(("email_accounts_total", "email_accounts_regular_use"), pair,
                                                 strict=True)}
    assert summary.rejected == []

