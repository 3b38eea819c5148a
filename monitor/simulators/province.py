"""A deterministic model of a fictitious province, "Tỉnh Sơn Hà" (code 000.00.00.H99).

Everything here is a pure function of the seed and the arguments: every random
draw comes from a ``random.Random`` seeded with a stable hash (BLAKE2b) of a key
such as ``(seed, "documents", unit code, month)``, never from Python's ``hash()``
(randomised per process), so two processes with the same seed serve the same
province.

The structure follows the 2025 reform (DOMAIN.md (e)): 25 departments with 3
subordinate agencies each, one department merged into another on 2025-03-01, 9
districts with ~270 communes until 2025-06-30, and ~120 merged communes directly
under the province from 2025-07-01.

Figures are generated per (unit, month) and calibrated to the provincial figures
of DOMAIN.md (f). Each unit follows, per KPI family, an improving, flat or
regressing trajectory with monthly noise. A month's flow totals are split over
its days (a multinomial for each whole, then a multivariate hypergeometric for
each part), so day records sum exactly to the month and every day keeps
part ≤ whole; the current month is served month-to-date from those days.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import math
import operator
import random
import sys
import unicodedata
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import yaml

from monitor.timeutil import add_months, local_date, local_midnight, zone
from monitor.units import Head, Level, Unit, UnitTree, build_tree

PROVINCE_CODE = "000.00.00.H99"
PROVINCE_NAME = "UBND tỉnh Sơn Hà"
EMAIL_DOMAIN = "sonha.gov.vn"
TIMEZONE = zone("Asia/Ho_Chi_Minh")
MERGE_DATE = date(2025, 3, 1)  # Sở TT&TT merged into Sở KH&CN
REFORM_DATE = date(2025, 7, 1)  # district level abolished, communes merged
STALL_DAYS = 90  # the stalled unit's data stops this many days before today

Grain = Literal["day", "month"]
Kind = Literal["document_management", "email_directory", "one_stop"]

GROUP_NAMES: dict[str, dict[str, str]] = {
    "tinh": {"vi": "Tỉnh", "en": "Province"},
    "so_nganh": {"vi": "Sở, ban, ngành", "en": "Departments"},
    "don_vi_truc_thuoc": {"vi": "Đơn vị trực thuộc sở, ngành", "en": "Subordinate agencies"},
    "huyen": {"vi": "UBND cấp huyện", "en": "Districts"},
    "xa": {"vi": "UBND cấp xã", "en": "Communes and wards"},
}

# name, English name, head's title, three subordinate agencies
DEPARTMENTS: tuple[tuple[str, str, str, tuple[str, str, str]], ...] = (
    ("Văn phòng UBND tỉnh", "Office of the Provincial People's Committee", "Chánh Văn phòng",
     ("Trung tâm Phục vụ hành chính công tỉnh", "Trung tâm Thông tin - Công báo", "Nhà khách UBND tỉnh")),
    ("Sở Nội vụ", "Department of Home Affairs", "Giám đốc",
     ("Ban Thi đua - Khen thưởng", "Ban Tôn giáo", "Chi cục Văn thư - Lưu trữ")),
    ("Sở Tư pháp", "Department of Justice", "Giám đốc",
     ("Trung tâm Trợ giúp pháp lý nhà nước", "Phòng Công chứng số 1", "Trung tâm Dịch vụ đấu giá tài sản")),
    ("Sở Kế hoạch và Đầu tư", "Department of Planning and Investment", "Giám đốc",
     ("Trung tâm Xúc tiến đầu tư", "Trung tâm Hỗ trợ doanh nghiệp nhỏ và vừa", "Ban Quản lý các dự án ODA")),
    ("Sở Tài chính", "Department of Finance", "Giám đốc",
     ("Trung tâm Thẩm định giá", "Trung tâm Tin học và Dịch vụ tài chính công", "Ban Quản lý Quỹ phát triển đất")),
    ("Sở Công Thương", "Department of Industry and Trade", "Giám đốc",
     ("Trung tâm Khuyến công và Tư vấn phát triển công nghiệp", "Trung tâm Xúc tiến thương mại",
      "Chi cục Phát triển thị trường")),
    ("Sở Nông nghiệp và Phát triển nông thôn", "Department of Agriculture and Rural Development", "Giám đốc",
     ("Chi cục Kiểm lâm", "Chi cục Thủy lợi", "Chi cục Trồng trọt và Bảo vệ thực vật")),
    ("Sở Giao thông vận tải", "Department of Transport", "Giám đốc",
     ("Ban Quản lý dự án giao thông", "Trung tâm Đăng kiểm xe cơ giới", "Trung tâm Sát hạch lái xe")),
    ("Sở Xây dựng", "Department of Construction", "Giám đốc",
     ("Trung tâm Quy hoạch xây dựng", "Trung tâm Kiểm định chất lượng công trình", "Ban Quản lý dự án nhà ở")),
    ("Sở Tài nguyên và Môi trường", "Department of Natural Resources and Environment", "Giám đốc",
     ("Văn phòng Đăng ký đất đai", "Trung tâm Quan trắc môi trường", "Chi cục Bảo vệ môi trường")),
    ("Sở Thông tin và Truyền thông", "Department of Information and Communications", "Giám đốc",
     ("Trung tâm Công nghệ thông tin và Truyền thông", "Trung tâm Giám sát, điều hành đô thị thông minh",
      "Trung tâm Dữ liệu tỉnh")),
    ("Sở Lao động - Thương binh và Xã hội", "Department of Labour, Invalids and Social Affairs", "Giám đốc",
     ("Trung tâm Dịch vụ việc làm", "Trung tâm Bảo trợ xã hội", "Chi cục Phòng, chống tệ nạn xã hội")),
    ("Sở Văn hóa, Thể thao và Du lịch", "Department of Culture, Sports and Tourism", "Giám đốc",
     ("Bảo tàng tỉnh", "Thư viện tỉnh", "Trung tâm Thông tin xúc tiến du lịch")),
    ("Sở Khoa học và Công nghệ", "Department of Science and Technology", "Giám đốc",
     ("Chi cục Tiêu chuẩn Đo lường Chất lượng", "Trung tâm Ứng dụng tiến bộ khoa học và công nghệ",
      "Trung tâm Thông tin và Thống kê khoa học và công nghệ")),
    ("Sở Giáo dục và Đào tạo", "Department of Education and Training", "Giám đốc",
     ("Trung tâm Giáo dục thường xuyên tỉnh", "Trường Trung học phổ thông Chuyên Sơn Hà",
      "Trung tâm Hỗ trợ phát triển giáo dục hòa nhập")),
    ("Sở Y tế", "Department of Health", "Giám đốc",
     ("Trung tâm Kiểm soát bệnh tật", "Chi cục Dân số - Kế hoạch hóa gia đình",
      "Chi cục An toàn vệ sinh thực phẩm")),
    ("Thanh tra tỉnh", "Provincial Inspectorate", "Chánh Thanh tra",
     ("Ban Tiếp công dân tỉnh", "Trung tâm Dữ liệu thanh tra", "Phòng Phòng, chống tham nhũng")),
    ("Ban Dân tộc", "Ethnic Minorities Committee", "Trưởng ban",
     ("Trung tâm Tư vấn và Hỗ trợ đồng bào dân tộc", "Ban Quản lý Chương trình 135",
      "Trường Phổ thông Dân tộc nội trú tỉnh")),
    ("Sở Ngoại vụ", "Department of Foreign Affairs", "Giám đốc",
     ("Trung tâm Dịch vụ đối ngoại", "Trung tâm Biên phiên dịch", "Ban Quản lý cửa khẩu")),
    ("Ban Quản lý Khu kinh tế", "Economic Zone Authority", "Trưởng ban",
     ("Trung tâm Dịch vụ khu kinh tế", "Ban Quản lý dự án khu kinh tế", "Trung tâm Phát triển hạ tầng khu kinh tế")),
    ("Ban Quản lý các khu công nghiệp", "Industrial Parks Authority", "Trưởng ban",
     ("Trung tâm Dịch vụ khu công nghiệp", "Công ty Phát triển hạ tầng khu công nghiệp",
      "Văn phòng đại diện khu công nghiệp phía Nam")),
    ("Đài Phát thanh và Truyền hình tỉnh", "Provincial Radio and Television", "Giám đốc",
     ("Trung tâm Sản xuất chương trình", "Trung tâm Kỹ thuật phát sóng",
      "Trung tâm Quảng cáo và Dịch vụ truyền thông")),
    ("Trường Chính trị tỉnh", "Provincial Political School", "Hiệu trưởng",
     ("Khoa Lý luận cơ sở", "Khoa Nhà nước và Pháp luật", "Trung tâm Bồi dưỡng cán bộ")),
    ("Ban Quản lý dự án đầu tư xây dựng tỉnh", "Provincial Construction Project Management Board", "Giám đốc",
     ("Ban Quản lý dự án dân dụng", "Ban Quản lý dự án nông nghiệp", "Ban Quản lý dự án hạ tầng")),
    ("Quỹ Đầu tư phát triển tỉnh", "Provincial Development Investment Fund", "Giám đốc",
     ("Chi nhánh Quỹ khu vực phía Bắc", "Chi nhánh Quỹ khu vực phía Nam", "Trung tâm Bảo lãnh tín dụng")),
)
MERGED_DEPARTMENT = "Sở Thông tin và Truyền thông"
ABSORBING_DEPARTMENT = "Sở Khoa học và Công nghệ"

DISTRICTS: tuple[tuple[str, str], ...] = (
    ("thành phố", "Sơn Hà"), ("huyện", "Bình Sơn"), ("huyện", "Hà Trung"), ("huyện", "Tân Lạc"),
    ("huyện", "Yên Thủy"), ("huyện", "Kim Bôi"), ("huyện", "Lạc Sơn"), ("huyện", "Đông Hưng"),
    ("huyện", "Minh Long"),
)
PLACE_SYLLABLES = (
    "An", "Bình", "Hòa", "Phú", "Tân", "Thạnh", "Xuân", "Đông", "Tây", "Nam", "Bắc", "Trung", "Hưng",
    "Long", "Phước", "Thành", "Quang", "Minh", "Đức", "Hợp", "Thuận", "Lộc", "Sơn", "Hà", "Lâm", "Thủy",
    "Kim", "Vĩnh", "Yên", "Mỹ", "Hiệp", "Nghĩa", "Tiến", "Thắng", "Lợi", "Phong", "Cẩm", "Quế", "Hồng",
    "Lạc", "Trường", "Định", "Khánh", "Tường", "Hải", "Châu", "Vân", "Gia", "Hoàng", "Thịnh",
)
SURNAMES = (("Nguyễn", 38), ("Trần", 11), ("Lê", 9), ("Phạm", 7), ("Hoàng", 5), ("Phan", 4), ("Vũ", 4),
            ("Đặng", 2), ("Bùi", 2), ("Đỗ", 2), ("Hồ", 1), ("Ngô", 1), ("Dương", 1), ("Lý", 1),
            ("Đinh", 1), ("Lương", 1), ("Mai", 1), ("Hà", 1), ("Tạ", 1))
MALE_MIDDLE = ("Văn", "Đức", "Minh", "Quốc", "Hữu", "Thanh", "Công", "Xuân", "Quang", "Mạnh")
FEMALE_MIDDLE = ("Thị", "Thu", "Ngọc", "Thanh", "Minh", "Kim", "Hồng", "Phương")
MALE_GIVEN = ("An", "Bình", "Cường", "Dũng", "Đạt", "Hải", "Hiếu", "Hùng", "Huy", "Khánh", "Long",
              "Minh", "Nam", "Phong", "Phúc", "Quân", "Sơn", "Tài", "Thắng", "Thành", "Trung", "Tuấn",
              "Tùng", "Việt", "Vinh")
FEMALE_GIVEN = ("Anh", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hằng", "Hiền", "Hoa", "Hương", "Lan",
                "Linh", "Loan", "Mai", "Nga", "Ngọc", "Nhung", "Oanh", "Phương", "Quỳnh", "Thảo",
                "Thủy", "Trang", "Vân", "Yến")

# Unit size classes drive volumes; (low, high) per month unless said otherwise.
SizeClass = Literal["department", "agency", "district", "old_commune", "new_commune"]
VOLUMES: dict[SizeClass, dict[str, tuple[int, int]]] = {
    "department": {"staff": (50, 200), "out": (150, 400), "in": (300, 900), "dossiers": (100, 1500),
                   "procedures": (30, 150)},
    "agency": {"staff": (15, 60), "out": (30, 100), "in": (60, 200), "dossiers": (10, 200),
               "procedures": (5, 30)},
    "district": {"staff": (80, 150), "out": (300, 600), "in": (600, 1200), "dossiers": (300, 1000),
                 "procedures": (150, 250)},
    "old_commune": {"staff": (20, 35), "out": (20, 60), "in": (40, 120), "dossiers": (30, 150),
                    "procedures": (80, 130)},
    "new_commune": {"staff": (40, 70), "out": (40, 120), "in": (80, 240), "dossiers": (150, 600),
                    "procedures": (180, 300)},
}
AGENCY_WITHOUT_DOSSIERS_SHARE = 0.4  # most chi cục / trung tâm handle no citizen procedures
MISSING_RECORD_SHARE = 0.03  # (unit, month) records a system lost

# Monthly volume factor: Tết (Jan/Feb) is quiet, December closes the year.
SEASON = {1: 1.0, 2: 0.7, 3: 1.0, 4: 0.95, 5: 1.0, 6: 1.05, 7: 1.0, 8: 0.95, 9: 1.0, 10: 1.05,
          11: 1.1, 12: 1.25}
PUBLIC_HOLIDAYS = {(1, 1), (4, 30), (5, 1), (9, 2)}

# KPI families: the band a unit's rate moves in (DOMAIN.md (f) calibration).
BANDS: dict[str, tuple[float, float]] = {
    "out_electronic": (0.10, 0.98),
    "out_signed": (0.80, 1.00),
    "in_electronic": (0.60, 0.99),
    "work_online": (0.30, 0.95),
    "docmgmt_active": (0.50, 0.98),
    "email_coverage": (0.53, 1.00),
    "email_regular": (0.46, 0.90),
    "in_system": (0.30, 1.00),
    "ontime": (0.95, 0.995),
    "online": (0.05, 0.60),
    "postal": (0.01, 0.05),
    "service_online": (0.60, 0.95),
    "full_online": (0.30, 0.85),
    "paid_online": (0.20, 0.70),
    "digitized": (0.40, 0.95),
}
DOCUMENT_FAMILIES = ("out_electronic", "out_signed", "in_electronic", "work_online", "docmgmt_active")
ONESTOP_FAMILIES = ("in_system", "online", "postal", "ontime", "paid_online", "digitized", "service_online",
                    "full_online")
EMAIL_FAMILIES = ("email_coverage", "email_regular")
LAGGING_ONTIME_BAND = (0.85, 0.92)  # a few units resolve noticeably late
LAGGING_ONTIME_SHARE = 0.08
NOISE = 0.04  # standard deviation of the monthly noise, as a fraction of the band's width
_TRIANGULAR_SD = math.sqrt(2 / 12)  # of u1 + u2 - 1, a cheap bell-shaped noise

# Typical shares of received dossiers still at TrangThaiHoSo 2, 4, 5, 6, 7, 8 at report time;
# the rest are resolved (9) or have their result returned (10).
UNRESOLVED_SHARES = (0.02, 0.07, 0.01, 0.004, 0.003, 0.002)
NOT_RECEIVED_CODES = (1, 3)


# ----------------------------------------------------------------------------- randomness

def stable_int(*parts: object) -> int:
    """A 64-bit integer from ``parts`` that is the same in every process."""
    key = repr(parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def stable_rng(*parts: object) -> random.Random:
    return random.Random(stable_int(*parts))


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


# Splitting a month over its days touches every item of the month (thousands for a large
# unit), so the per-item work is done by C code: random 32-bit words from one randbytes()
# call, sorted; Python only loops over days and categories.
_WORD_TYPE = next(code for code in "ILQ" if array(code).itemsize == 4)
_WORD_RANGE = 2**32


def random_words(rng: random.Random, count: int) -> array[int]:
    """``count`` uniform 32-bit words, the same on every platform."""
    words = array(_WORD_TYPE)
    words.frombytes(rng.randbytes(4 * count))
    if sys.byteorder == "big":
        words.byteswap()
    return words


def spread_over_days(total: int, cumulative_weights: Sequence[float], rng: random.Random) -> list[int]:
    """A multinomial draw: ``total`` items thrown onto days with the given weights."""
    draws = sorted(random_words(rng, total))
    scale = _WORD_RANGE / cumulative_weights[-1]
    counts, before = [], 0
    for threshold in cumulative_weights[:-1]:
        below = bisect.bisect_left(draws, threshold * scale)
        counts.append(below - before)
        before = below
    counts.append(total - before)
    return counts


def partition_items(per_day: Sequence[int], category_sizes: Sequence[int],
                    rng: random.Random) -> list[list[int]]:
    """Mark ``category_sizes[k]`` of the whole's items as category ``k`` at random positions.

    The whole's items are laid out day after day (``per_day`` of them each day);
    sampling positions without replacement makes the per-day counts a
    multivariate hypergeometric draw, so each day's parts never exceed that day's
    whole and each category sums exactly to its size. Returns, per category, the
    count on each day.
    """
    whole = sum(per_day)
    labelled = sum(category_sizes)
    if labelled > whole:
        raise ValueError(f"parts ({labelled}) exceed the whole ({whole})")
    labels = [0] * (whole - labelled)  # 0: in none of the categories
    for category, size in enumerate(category_sizes, start=1):
        labels.extend([category] * size)
    # A random permutation: sort positions on random keys, then gather (all in C).
    order = sorted(range(whole), key=random_words(rng, whole).__getitem__)
    shuffled = operator.itemgetter(*order)(labels) if whole > 1 else tuple(labels)
    result = [[0] * len(per_day) for _ in category_sizes]
    position = 0
    for day, size in enumerate(per_day):
        chunk = shuffled[position:position + size]
        for category, counts in enumerate(result, start=1):
            counts[day] = chunk.count(category)
        position += size
    return result


# ----------------------------------------------------------------------------- names

def ascii_fold(text: str) -> str:
    """``Nguyễn Văn Đạt`` → ``Nguyen Van Dat`` (for mailbox names and slugs)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def initials_slug(name: str) -> str:
    """``Sở Tài chính`` → ``stc``: how Vietnamese agencies abbreviate themselves in mail addresses."""
    words = [w for w in ascii_fold(name).replace("-", " ").replace(",", " ").split() if w.lower() != "va"]
    return "".join(w[0] for w in words).lower()


@dataclass(frozen=True)
class Person:
    """A member of a unit's staff (or a former one, for closed mailboxes)."""

    name: str
    mailbox: str  # local part, unique within the unit
    engagement: float  # below the unit's regular-use rate → uses mail regularly
    never_logs_in: bool  # when not regular, the account was never used
    status: str  # for former staff: locked, closed, maintenance or pending
    created: datetime


_SURNAME_CHOICES = tuple(name for name, _ in SURNAMES)
_SURNAME_CUMULATIVE = tuple(itertools.accumulate(weight for _, weight in SURNAMES))


@functools.cache
def _folded(word: str) -> str:
    return ascii_fold(word).lower()


def _person_name(rng: random.Random) -> tuple[str, str]:
    """A Vietnamese full name and its mailbox stem: ``Nguyễn Văn An`` → ``annv`` (given name,
    then the initials of surname and middle name, the usual provincial pattern)."""
    surname = rng.choices(_SURNAME_CHOICES, cum_weights=_SURNAME_CUMULATIVE)[0]
    if rng.random() < 0.5:
        middle, given = rng.choice(MALE_MIDDLE), rng.choice(MALE_GIVEN)
    else:
        middle, given = rng.choice(FEMALE_MIDDLE), rng.choice(FEMALE_GIVEN)
    return f"{surname} {middle} {given}", _folded(given) + _folded(surname)[0] + _folded(middle)[0]


# ----------------------------------------------------------------------------- trajectories

Shape = Literal["improving", "flat", "regressing"]


@dataclass(frozen=True)
class Trajectory:
    """Where a unit's rate sits in its band, month by month (as a fraction of the band)."""

    low: float
    high: float
    shape: Shape
    start: float
    end: float
    onset: float  # month index where the change is centred (improving) or begins (regressing)
    span: float  # months the change takes

    def fraction(self, month_index: int) -> float:
        if self.shape == "improving":
            return self.start + (self.end - self.start) / (1 + math.exp((self.onset - month_index) / self.span))
        if self.shape == "regressing":
            return self.start + (self.end - self.start) * clamp((month_index - self.onset) / self.span)
        return self.start

    def rate(self, month_index: int, noise: float) -> float:
        # fraction() inlined for improving units: this runs ~200,000 times per history.
        if self.shape == "improving":
            fraction = self.start + (self.end - self.start) / (1 + math.exp((self.onset - month_index) / self.span))
        else:
            fraction = self.fraction(month_index)
        fraction += noise
        return self.low + (self.high - self.low) * (0.0 if fraction < 0 else 1.0 if fraction > 1 else fraction)


def draw_trajectory(band: tuple[float, float], rng: random.Random) -> Trajectory:
    """About 60 % of units improve, 25 % stay flat, 15 % regress."""
    low, high = band
    roll = rng.random()
    if roll < 0.60:
        # Centred 8–32 months in: early history starts low (outgoing e-documents ~10 %).
        return Trajectory(low, high, "improving", rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0),
                          rng.uniform(8, 32), rng.uniform(2, 6))
    if roll < 0.85:
        return Trajectory(low, high, "flat", rng.uniform(0.3, 0.85), 0.0, 0.0, 1.0)
    start = rng.uniform(0.6, 0.95)
    return Trajectory(low, high, "regressing", start, start - rng.uniform(0.2, 0.45),
                      rng.uniform(0, 24), rng.uniform(6, 18))


# ----------------------------------------------------------------------------- figures

class DocumentFigures(NamedTuple):
    """One unit's document-management figures for a month or a day."""

    out_total: int
    out_electronic: int
    out_signed: int
    in_total: int
    in_electronic: int
    work_total: int
    work_online: int
    accounts_total: int  # stock
    accounts_active: int  # stock


class OneStopFigures(NamedTuple):
    """One unit's one-stop report for a month or a day."""

    reported: int
    status: tuple[int, ...]  # TheoTrangThai, codes 1..10
    channels: tuple[int, int, int]  # in person, online, postal
    resolved: tuple[int, int, int]  # before, on, after the appointment date
    with_fee: int
    paid: tuple[int, int]  # national portal, provincial gateway
    digitized: int
    procedures: tuple[int, int, int, int]  # stock: total, online, eligible for full online, full online

    @property
    def received(self) -> int:
        return sum(n for code, n in enumerate(self.status, start=1) if code not in NOT_RECEIVED_CODES)


DOCUMENT_STOCKS = frozenset({"accounts_total", "accounts_active"})
ONESTOP_STOCKS = frozenset({"procedures"})
F = TypeVar("F", DocumentFigures, OneStopFigures)


def sum_flows(days: Sequence[F], level: F, stocks: frozenset[str]) -> F:
    """Flows summed over ``days``; stocks taken from ``level`` (the month's level)."""
    values: dict[str, Any] = {}
    for name, level_value in zip(level._fields, level, strict=True):
        column = [getattr(day, name) for day in days]
        if name in stocks:
            values[name] = level_value
        elif isinstance(level_value, tuple):
            values[name] = tuple(sum(parts) for parts in zip(*column, strict=True)) if days \
                else tuple(0 for _ in level_value)
        else:
            values[name] = sum(column)
    return type(level)(**values)


# ----------------------------------------------------------------------------- structure

@dataclass
class _Draft:
    """A unit version before its head is known."""

    code: str
    name: str
    level: Level
    group: str
    size: SizeClass | None
    parent: str | None
    staff: int
    title: str
    slug: str
    name_en: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    successors: tuple[str, ...] = ()


def _code(level3: int, level2: int) -> str:
    return f"000.{level3:02d}.{level2:02d}.H99"


def _agency_title(name: str) -> str:
    for prefix, title in (("Chi cục", "Chi cục trưởng"), ("Ban", "Trưởng ban"), ("Trường", "Hiệu trưởng"),
                          ("Khoa", "Trưởng khoa"), ("Phòng Công chứng", "Trưởng phòng"),
                          ("Phòng", "Trưởng phòng")):
        if name.startswith(prefix):
            return title
    return "Giám đốc"


class _StructureBuilder:
    """Draws the province's units once; names and sizes depend on the seed."""

    def __init__(self, seed: int) -> None:
        self.rng = stable_rng(seed, "structure")
        self.drafts: list[_Draft] = []
        self.slugs: set[str] = set()
        names = [f"{a} {b}" for a in PLACE_SYLLABLES for b in PLACE_SYLLABLES if a != b]
        self.rng.shuffle(names)
        self.place_names = iter(names)

    def unique_slug(self, base: str) -> str:
        slug, number = base, 2
        while slug in self.slugs:
            slug, number = f"{base}{number}", number + 1
        self.slugs.add(slug)
        return slug

    def staff(self, size: SizeClass) -> int:
        return self.rng.randint(*VOLUMES[size]["staff"])

    def build(self) -> list[_Draft]:
        self.drafts.append(_Draft(PROVINCE_CODE, PROVINCE_NAME, Level.province, "tinh", None, None, 0,
                                  "Chủ tịch UBND tỉnh", self.unique_slug("ubnd"),
                                  name_en="Sơn Hà Provincial People's Committee"))
        self.add_departments()
        old_communes = self.add_districts()
        self.add_new_communes(old_communes)
        return self.drafts

    def add_departments(self) -> None:
        codes = {name: _code(0, index) for index, (name, *_rest) in enumerate(DEPARTMENTS, start=1)}
        for index, (name, name_en, title, agencies) in enumerate(DEPARTMENTS, start=1):
            merged = name == MERGED_DEPARTMENT
            department = _Draft(codes[name], name, Level.department, "so_nganh", "department", PROVINCE_CODE,
                                self.staff("department"), title, self.unique_slug(initials_slug(name)),
                                name_en=name_en)
            if merged:
                department.valid_to = MERGE_DATE - timedelta(days=1)
                department.successors = (codes[ABSORBING_DEPARTMENT],)
            self.drafts.append(department)
            for number, agency_name in enumerate(agencies, start=1):
                agency = _Draft(_code(number, index), agency_name, Level.agency, "don_vi_truc_thuoc", "agency",
                                department.code, self.staff("agency"), _agency_title(agency_name),
                                self.unique_slug(initials_slug(agency_name)))
                self.drafts.append(agency)
                if merged:
                    # Same code, new parent: a second version from the merge date on.
                    agency.valid_to = MERGE_DATE - timedelta(days=1)
                    moved = _Draft(**{**agency.__dict__, "parent": codes[ABSORBING_DEPARTMENT],
                                      "valid_from": MERGE_DATE, "valid_to": None})
                    self.drafts.append(moved)

    def add_districts(self) -> list[list[_Draft]]:
        """Districts and their communes, all ending the day before the reform."""
        end = REFORM_DATE - timedelta(days=1)
        per_district: list[list[_Draft]] = []
        for index, (kind, name) in enumerate(DISTRICTS, start=31):
            slug = ("tp" if kind == "thành phố" else "") + ascii_fold(name).lower().replace(" ", "")
            district = _Draft(_code(0, index), f"UBND {kind} {name}", Level.district, "huyen", "district",
                              PROVINCE_CODE, self.staff("district"), f"Chủ tịch UBND {kind}",
                              self.unique_slug(slug), valid_to=end)
            self.drafts.append(district)
            communes = [self.old_commune(district, index, number, kind == "thành phố")
                        for number in range(1, self.rng.randint(26, 34) + 1)]
            self.drafts.extend(communes)
            per_district.append(communes)
        return per_district

    def old_commune(self, district: _Draft, district_index: int, number: int, in_city: bool) -> _Draft:
        kind = ("phường" if self.rng.random() < 0.7 else "xã") if in_city else "thị trấn" if number == 1 else "xã"
        return self.commune(_code(number, district_index), kind, district.code, "old_commune",
                            valid_to=district.valid_to)

    def commune(self, code: str, kind: str, parent: str, size: SizeClass, *,
                valid_from: date | None = None, valid_to: date | None = None) -> _Draft:
        name = next(self.place_names)
        prefix = {"phường": "p", "xã": "x", "thị trấn": "tt"}[kind]
        return _Draft(code, f"UBND {kind} {name}", Level.ward if kind == "phường" else Level.commune, "xa",
                      size, parent, self.staff(size), f"Chủ tịch UBND {kind}",
                      self.unique_slug(prefix + ascii_fold(name).lower().replace(" ", "")),
                      valid_from=valid_from, valid_to=valid_to)

    def add_new_communes(self, old_by_district: list[list[_Draft]]) -> None:
        """From the reform on, every 2–3 neighbouring old communes form one new commune or ward,
        directly under the province; codes are re-issued in the block 51–59 (by former district)."""
        for district_number, olds in enumerate(old_by_district, start=1):
            position, number = 0, 1
            while position < len(olds):
                size = self.group_size(len(olds) - position)
                group = olds[position:position + size]
                kind = "phường" if any(o.level == Level.ward for o in group) else "xã"
                new = self.commune(_code(number, 50 + district_number), kind, PROVINCE_CODE, "new_commune",
                                   valid_from=REFORM_DATE)
                self.drafts.append(new)
                for old in group:
                    old.successors = (new.code,)
                position, number = position + size, number + 1

    def group_size(self, remaining: int) -> int:
        # Never leave a single commune behind: 4 left → 2 + 2, 2 or 3 left → one group.
        if remaining in (2, 3):
            return remaining
        if remaining == 4:
            return 2
        return 3 if self.rng.random() < 0.25 else 2


# ----------------------------------------------------------------------------- per-unit constants

@dataclass(frozen=True)
class UnitBasis:
    """What stays the same for a unit across months: sizes and habits."""

    size: SizeClass
    staff: int
    out: float
    incoming: float
    work_share: float
    dossiers: float  # 0 → the unit handles no procedures and is absent from the one-stop report
    procedures: int
    eligible_share: float
    fee_share: float
    account_ratio: float


@dataclass(frozen=True)
class _FlowSystem(Generic[F]):
    """How to produce one flow system's figures and records (documents or one-stop)."""

    kind: Kind
    month: Callable[[str, int], F | None]
    days: Callable[[str, int], Sequence[F]]
    stocks: frozenset[str]
    to_record: Callable[[str, str, str, str, F], dict[str, Any]]  # code, label, first and last day


def _document_record(code: str, label: str, first: str, last: str, fig: DocumentFigures) -> dict[str, Any]:
    return {
        "OrganId": code, "Period": label, "From": first, "To": last,
        "SoVanBanDi": {"TongSo": fig.out_total, "DienTu": fig.out_electronic, "KySo": fig.out_signed},
        "SoVanBanDen": {"TongSo": fig.in_total, "XuLyTrenPhanMem": fig.in_electronic},
        "HoSoCongViec": {"TongSo": fig.work_total, "TrenMoiTruongMang": fig.work_online},
        "TaiKhoan": {"TongSo": fig.accounts_total, "CoThaoTac": fig.accounts_active},
    }


_STATUS_KEYS = tuple(str(code) for code in range(1, 11))
_CHANNEL_KEYS = ("1", "2", "3")
_TIMING_KEYS = ("TruocHan", "DungHan", "TreHan")


def _onestop_record(code: str, label: str, first: str, last: str, fig: OneStopFigures) -> dict[str, Any]:
    total, online, eligible, full = fig.procedures
    return {
        "MaDonVi": code, "Ky": label, "TuNgay": first, "DenNgay": last,
        "TongSoHoSoBaoCao": fig.reported,
        "TheoTrangThai": dict(zip(_STATUS_KEYS, fig.status, strict=True)),
        "TiepNhanTheoKenh": dict(zip(_CHANNEL_KEYS, fig.channels, strict=True)),
        "DaXuLy": dict(zip(_TIMING_KEYS, fig.resolved, strict=True)),
        "CoPhiLePhi": fig.with_fee,
        "ThanhToanTrucTuyen": {"1": fig.paid[0], "2": fig.paid[1]},
        "SoHoa": fig.digitized,
        "ThuTuc": {"TongSo": total, "DVCTT": online, "DuDieuKienToanTrinh": eligible, "ToanTrinh": full},
    }


def generalized_time(instant: datetime) -> str:
    """LDAP generalized time, UTC: ``20261118013000Z``."""
    return instant.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


# ----------------------------------------------------------------------------- the model

class ProvinceModel:
    """Tỉnh Sơn Hà: its units and what its three systems report. Treat as immutable."""

    def __init__(self, seed: int = 2025, history_start: date = date(2023, 1, 1)) -> None:
        self.seed = seed
        self.history_start = history_start.replace(day=1)
        self.timezone = TIMEZONE
        self._rosters: dict[str, tuple[Person, ...]] = {}
        self._former_staff: dict[str, int] = {}
        self._unit_seeds: dict[tuple[str, str], int] = {}
        self._trajectories: dict[tuple[str, str], Trajectory] = {}
        self._trajectory_sets: dict[tuple[str, tuple[str, ...]], tuple[Trajectory, ...]] = {}
        self._document_months: dict[tuple[str, int], DocumentFigures] = {}
        self._onestop_months: dict[tuple[str, int], OneStopFigures | None] = {}
        self._codes_by_month: dict[int, tuple[str, ...]] = {}
        self._day_weights: dict[int, list[float]] = {}
        self._calendar: dict[int, tuple[date, ...]] = {}
        self._labels: dict[int, tuple[str, ...]] = {}
        self._missing: dict[tuple[str, int], frozenset[str]] = {}
        drafts = _StructureBuilder(seed).build()
        self._slugs = {d.code: d.slug for d in drafts}
        self._tree = build_tree([self._unit(d) for d in drafts], GROUP_NAMES, f"<simulated province, seed {seed}>")
        self._basis = {d.code: self._draw_basis(d) for d in drafts if d.size is not None}
        self.absent_from, self.stalled_unit = self._draw_gaps()
        self._document_days = functools.lru_cache(maxsize=8192)(self._split_document_month)
        self._onestop_days = functools.lru_cache(maxsize=8192)(self._split_onestop_month)
        self._accounts_on = functools.lru_cache(maxsize=8)(self._build_accounts)
        self._documents: _FlowSystem[DocumentFigures] = _FlowSystem(
            "document_management", self._document_month, self._document_days, DOCUMENT_STOCKS,
            _document_record)
        self._onestop: _FlowSystem[OneStopFigures] = _FlowSystem(
            "one_stop", self._onestop_month, self._onestop_days, ONESTOP_STOCKS, _onestop_record)

    # ------------------------------------------------------------------ structure

    def _unit(self, draft: _Draft) -> Unit:
        rng = self._roster_rng(draft.code, draft.staff)
        name, mailbox = _person_name(rng)  # the roster's first person, without drawing the rest
        head = Head(name=name, email=f"{mailbox}.{draft.slug}@{EMAIL_DOMAIN}", title=draft.title)
        return Unit(code=draft.code, name=draft.name, name_en=draft.name_en, level=draft.level,
                    group=draft.group, parent=draft.parent, head=head, staff_count=draft.staff,
                    valid_from=draft.valid_from, valid_to=draft.valid_to, successors=draft.successors)

    def unit_tree(self) -> UnitTree:
        return self._tree

    def units_yaml(self) -> str:
        """The tree as a units file that ``monitor.units.load_units`` reads back."""
        document = {
            "version": 1,
            "groups": GROUP_NAMES,
            "units": [u.model_dump(mode="json", exclude_defaults=True) for u in self._tree.versions],
        }
        header = (f"# Tỉnh Sơn Hà, a simulated province (monitor.simulators, seed {self.seed}).\n"
                  "# Dates are local dates in Asia/Ho_Chi_Minh, validity inclusive.\n")
        return header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120)

    def write_units(self, path: Path) -> None:
        path.write_text(self.units_yaml(), encoding="utf-8")

    def _rng(self, *parts: object) -> random.Random:
        return stable_rng(self.seed, *parts)

    def _month_rng(self, purpose: str, code: str, index: int) -> random.Random:
        """The generator for one (purpose, unit, month): a stable per-(purpose, unit) hash mixed
        with the month, which is much cheaper than hashing the whole key every month."""
        base = self._unit_seeds.get((purpose, code))
        if base is None:
            base = self._unit_seeds[(purpose, code)] = stable_int(self.seed, purpose, code)
        return random.Random(base ^ (((index + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF))

    def _draw_basis(self, draft: _Draft) -> UnitBasis:
        assert draft.size is not None
        rng = self._rng("basis", draft.code)
        volumes = VOLUMES[draft.size]
        dossiers = float(rng.randint(*volumes["dossiers"]))
        if draft.size == "agency" and rng.random() < AGENCY_WITHOUT_DOSSIERS_SHARE:
            dossiers = 0.0
        return UnitBasis(size=draft.size, staff=draft.staff, out=rng.uniform(*volumes["out"]),
                         incoming=rng.uniform(*volumes["in"]), work_share=rng.uniform(0.2, 0.4),
                         dossiers=dossiers, procedures=rng.randint(*volumes["procedures"]),
                         eligible_share=rng.uniform(0.5, 0.8), fee_share=rng.uniform(0.2, 0.5),
                         account_ratio=rng.uniform(0.92, 1.02))

    def _draw_gaps(self) -> tuple[dict[str, frozenset[str]], str]:
        """Which units a system never heard of, and the one whose data stopped."""
        rng = self._rng("gaps")
        agencies = sorted(c for c, b in self._basis.items() if b.size == "agency" and b.dossiers > 0)
        still_valid = {u.code for u in self._tree.versions if u.valid_to is None}
        departments = sorted(c for c, b in self._basis.items() if b.size == "department" and c in still_valid)
        new_communes = sorted(c for c, b in self._basis.items() if b.size == "new_commune")
        no_docs = rng.choice(agencies)
        no_mail = rng.choice(new_communes)
        no_onestop = rng.choice([c for c in departments if c != no_docs])
        stalled = rng.choice([c for c in departments if c != no_onestop])
        absent = {"document_management": frozenset({no_docs}), "email_directory": frozenset({no_mail}),
                  "one_stop": frozenset({no_onestop})}
        return absent, stalled

    # ------------------------------------------------------------------ months

    def month_index(self, day: date) -> int:
        return (day.year - self.history_start.year) * 12 + day.month - self.history_start.month

    def month_start(self, index: int) -> date:
        return add_months(self.history_start, index)

    def _day_labels(self, index: int) -> tuple[str, ...]:
        labels = self._labels.get(index)
        if labels is None:
            labels = self._labels[index] = tuple(day.isoformat() for day in self._month_days(index))
        return labels

    def _month_days(self, index: int) -> tuple[date, ...]:
        days = self._calendar.get(index)
        if days is None:
            first = self.month_start(index)
            days = tuple(first + timedelta(days=d) for d in range((add_months(first, 1) - first).days))
            self._calendar[index] = days
        return days

    def _cumulative_day_weights(self, index: int) -> list[float]:
        cached = self._day_weights.get(index)
        if cached is None:
            cached, running = [], 0.0
            for day in self._month_days(index):
                if (day.month, day.day) in PUBLIC_HOLIDAYS or day.weekday() == 6:
                    running += 0.04
                elif day.weekday() == 5:
                    running += 0.12
                else:
                    running += 1.0
                cached.append(running)
            self._day_weights[index] = cached
        return cached

    def _season(self, index: int) -> float:
        return SEASON[(self.history_start.month - 1 + index) % 12 + 1]

    def _codes_in_month(self, index: int) -> tuple[str, ...]:
        """Units (other than the province itself) valid on some day of the month. All validity
        changes fall on the first of a month, so a unit valid in a month is valid all month."""
        codes = self._codes_by_month.get(index)
        if codes is None:
            first = self.month_start(index)
            last = add_months(first, 1) - timedelta(days=1)
            codes = tuple(sorted({u.code for u in self._tree.versions
                                  if u.overlaps(first, last) and u.code in self._basis}))
            self._codes_by_month[index] = codes
        return codes

    # ------------------------------------------------------------------ rates

    def _trajectory(self, code: str, family: str) -> Trajectory:
        key = (code, family)
        trajectory = self._trajectories.get(key)
        if trajectory is None:
            rng = self._rng("profile", code, family)
            band = BANDS[family]
            if family == "ontime" and rng.random() < LAGGING_ONTIME_SHARE:
                band = LAGGING_ONTIME_BAND
            trajectory = draw_trajectory(band, rng)
            self._trajectories[key] = trajectory
        return trajectory

    def rates(self, code: str, families: tuple[str, ...], month_index: int, rng: random.Random) -> list[float]:
        """The unit's rates for some KPI families in a month; ``rng`` supplies the month's noise.
        One call per month and system (rather than per family) keeps the generation fast."""
        trajectories = self._trajectory_sets.get((code, families))
        if trajectories is None:
            trajectories = tuple(self._trajectory(code, family) for family in families)
            self._trajectory_sets[(code, families)] = trajectories
        random_ = rng.random
        scale = NOISE / _TRIANGULAR_SD
        return [t.rate(month_index, (random_() + random_() - 1.0) * scale) for t in trajectories]

    @staticmethod
    def _volume(mean: float, rng: random.Random) -> int:
        return max(0, round(mean * (0.85 + 0.3 * rng.random())))

    # ------------------------------------------------------------------ documents

    def _document_month(self, code: str, index: int) -> DocumentFigures:
        cached = self._document_months.get((code, index))
        if cached is not None:
            return cached
        basis = self._basis[code]
        rng = self._month_rng("documents", code, index)
        electronic, signed, processed, online, active = self.rates(code, DOCUMENT_FAMILIES, index, rng)
        season = self._season(index)
        out_total = self._volume(basis.out * season, rng)
        out_electronic = round(out_total * electronic)
        out_signed = round(out_electronic * signed)
        in_total = self._volume(basis.incoming * season, rng)
        in_electronic = round(in_total * processed)
        work_total = self._volume(basis.out * basis.work_share * season, rng)
        work_online = round(work_total * online)
        accounts_total = max(1, round(basis.staff * basis.account_ratio) + rng.randint(-2, 2))
        accounts_active = round(accounts_total * active)
        figures = DocumentFigures(out_total, out_electronic, out_signed, in_total, in_electronic,
                                  work_total, work_online, accounts_total, accounts_active)
        self._document_months[(code, index)] = figures
        return figures

    def _split_document_month(self, code: str, index: int) -> list[DocumentFigures]:
        month = self._document_month(code, index)
        rng = self._month_rng("document-days", code, index)
        weights = self._cumulative_day_weights(index)
        out_days = spread_over_days(month.out_total, weights, rng)
        (electronic_days,) = partition_items(out_days, [month.out_electronic], rng)
        (signed_days,) = partition_items(electronic_days, [month.out_signed], rng)
        in_days = spread_over_days(month.in_total, weights, rng)
        (processed_days,) = partition_items(in_days, [month.in_electronic], rng)
        work_days = spread_over_days(month.work_total, weights, rng)
        (online_days,) = partition_items(work_days, [month.work_online], rng)
        return [DocumentFigures(out_days[d], electronic_days[d], signed_days[d], in_days[d], processed_days[d],
                                work_days[d], online_days[d], month.accounts_total, month.accounts_active)
                for d in range(len(weights))]

    # ------------------------------------------------------------------ one-stop

    def _onestop_month(self, code: str, index: int) -> OneStopFigures | None:
        key = (code, index)
        if key not in self._onestop_months:
            self._onestop_months[key] = self._draw_onestop_month(code, index)
        return self._onestop_months[key]

    def _draw_onestop_month(self, code: str, index: int) -> OneStopFigures | None:
        basis = self._basis[code]
        if basis.dossiers <= 0:
            return None
        rng = self._month_rng("one-stop", code, index)
        in_system, online_rate, postal_rate, ontime_rate, paid_rate, digitized_rate, offered_rate, full_rate = (
            self.rates(code, ONESTOP_FAMILIES, index, rng))
        reported = max(1, self._volume(basis.dossiers * self._season(index), rng))
        received = min(reported, round(reported * in_system))
        spare = reported - received
        new = min(spare, round(received * 0.01 * rng.random()))
        refused = min(spare - new, round(received * 0.012 * rng.random()))
        # Received dossiers by status: small shares first, the rest resolved (codes 9 and 10).
        received_by_code = [int(received * share * (0.8 + 0.4 * rng.random())) for share in UNRESOLVED_SHARES]
        resolved = received - sum(received_by_code)
        returned = round(resolved * (0.55 + 0.15 * rng.random()))  # result already handed back (10)
        s2, s4, s5, s6, s7, s8 = received_by_code
        status = (new, s2, refused, s4, s5, s6, s7, s8, resolved - returned, returned)
        online = round(received * online_rate)
        postal = min(received - online, round(received * postal_rate))
        ontime = round(resolved * ontime_rate)
        before = round(ontime * (0.45 + 0.3 * rng.random()))
        with_fee = min(received, round(received * basis.fee_share * (0.9 + 0.2 * rng.random())))
        paid = round(with_fee * paid_rate)
        paid_national = round(paid * (0.3 + 0.3 * rng.random()))
        digitized = round(received * digitized_rate)
        total = max(1, basis.procedures + rng.randint(-2, 2))
        offered = round(total * offered_rate)
        eligible = round(offered * basis.eligible_share)
        full = round(eligible * full_rate)
        return OneStopFigures(reported, status, (received - online - postal, online, postal),
                              (before, ontime - before, resolved - ontime), with_fee,
                              (paid_national, paid - paid_national), digitized, (total, offered, eligible, full))

    def _split_onestop_month(self, code: str, index: int) -> list[OneStopFigures]:
        month = self._onestop_month(code, index)
        if month is None:
            return []
        rng = self._month_rng("one-stop-days", code, index)
        reported_days = spread_over_days(month.reported, self._cumulative_day_weights(index), rng)
        status_days = partition_items(reported_days, month.status, rng)
        days = range(len(reported_days))
        received_days = [sum(status_days[c - 1][d] for c in range(1, 11) if c not in NOT_RECEIVED_CODES)
                         for d in days]
        channel_days = partition_items(received_days, month.channels, rng)
        (fee_days,) = partition_items(received_days, [month.with_fee], rng)
        paid_days = partition_items(fee_days, month.paid, rng)
        (digitized_days,) = partition_items(received_days, [month.digitized], rng)
        resolved_days = [status_days[8][d] + status_days[9][d] for d in days]
        timing_days = partition_items(resolved_days, month.resolved, rng)
        return [OneStopFigures(
            reported_days[d], tuple(col[d] for col in status_days),
            (channel_days[0][d], channel_days[1][d], channel_days[2][d]),
            (timing_days[0][d], timing_days[1][d], timing_days[2][d]), fee_days[d],
            (paid_days[0][d], paid_days[1][d]), digitized_days[d], month.procedures) for d in days]

    # ------------------------------------------------------------------ records

    def document_records(self, start: date, end: date, grain: Grain, now: datetime) -> list[dict[str, Any]]:
        """Document-management statistics for periods overlapping ``[start, end]``, as served."""
        return self._records(self._documents, start, end, grain, local_date(now, self.timezone))

    def onestop_records(self, start: date, end: date, grain: Grain, now: datetime) -> list[dict[str, Any]]:
        """One-stop reports for periods overlapping ``[start, end]``, as served."""
        return self._records(self._onestop, start, end, grain, local_date(now, self.timezone))

    def has_data(self, kind: Kind, code: str, index: int) -> bool:
        """Whether a system holds the unit's month at all (before month-to-date cut-offs)."""
        if code in self.absent_from[kind] or code not in self._basis:
            return False
        return code not in self._missing_in_month(kind, index)

    def _missing_in_month(self, kind: Kind, index: int) -> frozenset[str]:
        """The (unit, month) records a system lost, drawn once per month for all units."""
        missing = self._missing.get((kind, index))
        if missing is None:
            rng = self._rng("missing", kind, index)
            missing = frozenset(c for c in self._codes_in_month(index) if rng.random() < MISSING_RECORD_SHARE)
            self._missing[(kind, index)] = missing
        return missing

    def data_end(self, kind: Kind, code: str, today: date) -> date:
        """First local day the system has no data for: today, or earlier for the stalled unit."""
        if code == self.stalled_unit and kind in ("document_management", "one_stop"):
            return today - timedelta(days=STALL_DAYS)
        return today

    def _records(self, system: _FlowSystem[F], start: date, end: date, grain: Grain,
                 today: date) -> list[dict[str, Any]]:
        if start > end:
            return []
        first = max(self.month_index(start), 0)
        last = min(self.month_index(end), self.month_index(today - timedelta(days=1)))
        records: list[dict[str, Any]] = []
        for index in range(first, last + 1):
            month_records: list[tuple[str, dict[str, Any]]] = []
            for code in self._codes_in_month(index):  # sorted by code
                month_records.extend(self._unit_month_records(system, code, index, start, end, grain, today))
            month_records.sort(key=operator.itemgetter(0))  # stable: by period, then code
            records.extend(record for _, record in month_records)
        return records

    def _unit_month_records(self, system: _FlowSystem[F], code: str, index: int, start: date, end: date,
                            grain: Grain, today: date) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.has_data(system.kind, code, index):
            return
        month = system.month(code, index)
        if month is None:
            return
        days = self._month_days(index)
        limit = min(today, self.data_end(system.kind, code, today))  # exclusive
        known = min(len(days), (limit - days[0]).days)  # days of the month with data so far
        if known <= 0:
            return
        labels = self._day_labels(index)
        if grain == "month":
            label = labels[0][:7]
            figures = month if known == len(days) else sum_flows(system.days(code, index)[:known], month,
                                                                 system.stocks)
            yield label, system.to_record(code, label, labels[0], labels[-1], figures)
            return
        per_day = system.days(code, index)
        for day, label, figures in zip(days[:known], labels, per_day, strict=False):
            if start <= day <= end:
                yield label, system.to_record(code, label, label, label, figures)

    # ------------------------------------------------------------------ email

    def _roster_rng(self, code: str, staff: int) -> random.Random:
        """The roster's generator after its first draw (how many former staff there are)."""
        rng = self._rng("roster", code)
        self._former_staff[code] = rng.randint(0, max(1, staff // 25))
        return rng

    def _roster(self, code: str) -> tuple[Person, ...]:
        """Current staff first (index 0 is the head), then former staff with dead mailboxes."""
        roster = self._rosters.get(code)
        if roster is not None:
            return roster
        basis = self._basis[code]
        # Mailboxes of a unit the reform created date from the reform, not from years before.
        valid_from = REFORM_DATE if basis.size == "new_commune" else None
        staff = basis.staff
        rng = self._roster_rng(code, staff)
        people: list[Person] = []
        taken: set[str] = set()
        for index in range(max(staff, 1) + self._former_staff[code]):
            name, stem = _person_name(rng)
            mailbox, number = stem, 2
            while mailbox in taken:
                mailbox, number = f"{stem}{number}", number + 1
            taken.add(mailbox)
            is_former = index >= max(staff, 1)
            status = rng.choices(("locked", "closed", "maintenance", "pending"), weights=(40, 45, 10, 5))[0]
            people.append(Person(name=name, mailbox=mailbox, engagement=rng.random(),
                                 never_logs_in=rng.random() < (0.5 if is_former else 0.25),
                                 status=status if is_former else "active",
                                 created=self._created(rng, valid_from, is_former)))
        roster = tuple(people)
        self._rosters[code] = roster
        return roster

    @staticmethod
    def _created(rng: random.Random, valid_from: date | None, is_former: bool) -> datetime:
        """When the mailbox was created: office hours (UTC+7) on some day of the right years."""
        if valid_from is not None:  # a unit created by the reform got its mailboxes around then
            first, days = valid_from - timedelta(days=20), 20
        elif is_former:
            first, days = date(2014, 1, 1), 8 * 365
        else:
            first, days = date(2016, 1, 1), 7 * 365
        minutes = rng.randrange(days * 600)  # 600 office minutes a day
        return datetime.combine(first, time(1, 0), UTC) + timedelta(days=minutes // 600, minutes=minutes % 600)

    def email_accounts(self, now: datetime) -> list[dict[str, str]]:
        """The mail directory as it stands on ``now``'s local day, one dict per account."""
        return [dict(account) for account in self._accounts_on(local_date(now, self.timezone))]

    def _build_accounts(self, today: date) -> tuple[tuple[tuple[str, str], ...], ...]:
        # Logons are anchored at the local midnight starting today, so every instant of a day
        # sees the same directory (pages fetched seconds apart stay consistent).
        anchor = local_midnight(today, self.timezone)
        index = self.month_index(today)
        accounts: list[tuple[tuple[str, str], ...]] = []
        for unit in sorted(self._tree.valid_on(today), key=lambda u: u.code):
            if unit.code not in self._basis or unit.code in self.absent_from["email_directory"]:
                continue
            accounts.extend(self._unit_accounts(unit, index, today, anchor))
        return tuple(accounts)

    def _unit_accounts(self, unit: Unit, index: int, today: date,
                       anchor: datetime) -> Iterator[tuple[tuple[str, str], ...]]:
        code = unit.code
        month_rng = self._month_rng("email", code, index)
        coverage, regular = self.rates(code, EMAIL_FAMILIES, index, month_rng)
        roster = self._roster(code)
        active = max(1, round(coverage * unit.staff_count))
        day_rng = self._rng("logon", code, today.isoformat())
        for position, person in enumerate(roster):
            is_former = position >= max(unit.staff_count, 1)
            if not is_former and position >= active:
                continue  # staff without a mailbox yet
            if not is_former and person.engagement < regular:
                logon: datetime | None = anchor - timedelta(seconds=day_rng.uniform(60, 5 * 86400))
            elif person.never_logs_in:
                logon = None
            else:
                logon = anchor - timedelta(days=day_rng.uniform(35, 365 if not is_former else 900))
            yield self._account(unit, person, anchor, logon)

    def _account(self, unit: Unit, person: Person, anchor: datetime,
                 logon: datetime | None) -> tuple[tuple[str, str], ...]:
        created = min(person.created, anchor - timedelta(days=1))
        if logon is not None and logon < created:
            created = logon - timedelta(days=1)
        fields_: list[tuple[str, str]] = [
            ("name", f"{person.mailbox}.{self._slugs[unit.code]}@{EMAIL_DOMAIN}"),
            ("displayName", person.name), ("ou", unit.code), ("zimbraAccountStatus", person.status),
            ("zimbraCreateTimestamp", generalized_time(created)),
        ]
        if logon is not None:
            fields_.append(("zimbraLastLogonTimestamp", generalized_time(logon)))
        return tuple(fields_)
