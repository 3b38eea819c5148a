"""The HTML gap report: one self-contained, escaped page with two charts per target —
checked as markup here, and in a real headless Chromium (screenshot, console, DOM)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest

from monitor.reports.html import MAX_CHART_UNITS, STATUS_NAMES, TEXTS, render_html
from monitor.reports.model import REPORT_STATUSES, GapReport, Point, TargetSection
from tests.reports.sample import sample_report
from tests.support.components import chromium_render, require_chromium

HOSTILE = "=HYPERLINK(\"http://x\")+Trung tâm <Phục vụ> & \"HCC\""
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                  "source", "track", "wbr"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- a small DOM


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find_all(self, test: Callable[[Node], bool]) -> list[Node]:
        return [node for node in self.walk() if test(node)]

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children).replace("\xa0", " ")


class _Builder(HTMLParser):
    """A strict tree builder: every end tag must close the innermost open element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if len(self.stack) == 1 or self.stack[-1].tag != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1].tag}> at {self.getpos()}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(markup: str) -> Node:
    builder = _Builder()
    builder.feed(markup)
    builder.close()
    unclosed = [n.tag for n in builder.stack[1:]]
    assert not builder.errors and not unclosed, (builder.errors, unclosed)
    return builder.root


def charts(root: Node) -> list[Node]:
    return root.find_all(lambda n: n.tag == "svg" and "chart" in n.classes)


def marks(node: Node) -> list[Node]:
    return node.find_all(lambda n: "mark" in n.classes)


def has_trend_data(section: TargetSection) -> bool:
    return any(p.value is not None for p in section.history)


def has_unit_data(section: TargetSection) -> bool:
    return any(r.actual is not None for r in section.rows[:MAX_CHART_UNITS])


def page(report: GapReport) -> tuple[str, Node]:
    markup = render_html(report).decode("utf-8")
    return markup, parse(markup)


# --------------------------------------------------------------------------- the markup


@pytest.mark.parametrize("language", ["vi", "en"])
def test_the_page_is_well_formed_html_in_the_report_language(language: str) -> None:
    report = sample_report(language)
    body = render_html(report)
    assert body.startswith(b"<!DOCTYPE html>")
    root = parse(body.decode("utf-8"))
    (html,) = root.find_all(lambda n: n.tag == "html")
    assert html.attrs["lang"] == language
    (head,) = root.find_all(lambda n: n.tag == "head")
    (title,) = [n for n in head.children if isinstance(n, Node) and n.tag == "title"]
    assert TEXTS[report.language]["title"] in title.text
    assert root.find_all(lambda n: n.tag == "meta" and n.attrs.get("charset", "").lower() == "utf-8")


@pytest.mark.parametrize("language", ["vi", "en"])
def test_no_external_assets_no_script_and_a_csp_that_refuses_them(language: str) -> None:
    report = sample_report(language)
    markup, root = page(report)
    external = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
    assert not root.find_all(lambda n: n.tag in ("script", "iframe", "object", "embed", "link", "base"))
    for node in root.walk():
        for name, value in node.attrs.items():
            if name in ("src", "srcset", "xlink:href", "data", "poster", "background", "action", "formaction"):
                raise AssertionError(f"<{node.tag} {name}={value!r}>: the page must load nothing")
            if name == "href" and node.tag != "a":
                raise AssertionError(f"<{node.tag} href={value!r}>: only links may have a URL")
            if name.startswith("on"):
                raise AssertionError(f"<{node.tag} {name}>: no JavaScript")
    styles = " ".join(n.text for n in root.find_all(lambda n: n.tag == "style"))
    styles += " ".join(n.attrs["style"] for n in root.walk() if "style" in n.attrs)
    assert "url(" not in styles and "@import" not in styles and "@font-face" not in styles
    # Links are allowed: to the legal texts (absolute) and to sections of the page.
    links = [n.attrs["href"] for n in root.find_all(lambda n: n.tag == "a")]
    assert {h for h in links if external.match(h)} == {s.citation_url for s in report.targets if s.citation_url}
    assert all(h.startswith("#") for h in links if not external.match(h))
    (csp,) = root.find_all(lambda n: n.tag == "meta" and n.attrs.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp.attrs["content"]
    assert "<script" not in markup.lower()


@pytest.mark.parametrize("language", ["vi", "en"])
def test_the_hostile_unit_name_is_escaped_everywhere_and_shown_as_text(language: str) -> None:
    markup, root = page(sample_report(language))
    assert "&lt;Phục vụ&gt;" in markup
    assert "<Phục vụ>" not in markup
    assert "& \"HCC\"" not in markup and "&amp; &#34;HCC&#34;" in markup
    assert not root.find_all(lambda n: n.tag.startswith("phục"))
    # Escaped once, not twice: the reader sees the name exactly, in the table and in the chart.
    cells = root.find_all(lambda n: n.tag == "td" and "unit" in n.classes and n.text.startswith(HOSTILE))
    assert len(cells) == 1
    tooltips = root.find_all(lambda n: n.tag == "title" and n.text == HOSTILE)
    assert len(tooltips) == 1  # the bar chart's label


@pytest.mark.parametrize("language", ["vi", "en"])
def test_status_counts_shown_are_the_reports(language: str) -> None:
    report = sample_report(language)
    _, root = page(report)
    (summary,) = root.find_all(lambda n: n.attrs.get("id") == "summary")

    def shown(container: Node) -> dict[str, int]:
        out = {}
        for item in container.find_all(lambda n: "data-status" in n.attrs and n.tag == "li"):
            (count,) = item.find_all(lambda n: "count" in n.classes)
            (name,) = item.find_all(lambda n: "name" in n.classes)
            assert int(count.text) == int(item.attrs["data-count"])
            assert name.text == STATUS_NAMES[report.language][item.attrs["data-status"]]
            out[item.attrs["data-status"]] = int(count.text)
        return out

    assert shown(summary) == {s: report.status_counts.get(s, 0) for s in REPORT_STATUSES}
    for section in report.targets:
        (container,) = [n for n in root.walk() if n.tag == "section" and n.attrs.get("data-rule") == section.rule]
        assert shown(container) == {s: section.status_counts.get(s, 0) for s in REPORT_STATUSES}
        rows = container.find_all(lambda n: n.tag == "tr" and "data-unit" in n.attrs)  # its table only
        assert [(r.attrs["data-unit"], r.attrs["data-status"]) for r in rows] == [
            (r.unit, r.status) for r in section.rows]  # the order the report gives


def test_vietnamese_status_names_are_the_agreed_ones() -> None:
    assert STATUS_NAMES["vi"] == {"met": "Đạt", "on_track": "Đúng tiến độ", "at_risk": "Có nguy cơ",
                                  "behind": "Chậm tiến độ", "missed": "Không đạt (quá hạn)",
                                  "no_data": "Chưa có dữ liệu", "stale": "Dữ liệu cũ"}
    assert set(STATUS_NAMES["en"]) == set(STATUS_NAMES["vi"]) == set(REPORT_STATUSES)
    assert set(TEXTS["vi"]) == set(TEXTS["en"])


@pytest.mark.parametrize("language", ["vi", "en"])
def test_one_trend_and_one_units_chart_per_target_with_marks_where_there_is_data(language: str) -> None:
    report = sample_report(language)
    _, root = page(report)
    found = charts(root)
    assert len(found) == 2 * len(report.targets)
    by_name = {c.attrs["data-chart"]: c for c in found}
    no_data = TEXTS[report.language]["no_data"]
    for section in report.targets:
        trend, units = by_name[f"{section.rule}-trend"], by_name[f"{section.rule}-units"]
        valued = [p for p in section.history if p.value is not None]
        if has_trend_data(section):
            points = [m for m in marks(trend) if "point" in m.classes]
            assert len(points) == len(valued)
            assert all(m.tag in ("path", "polyline", "rect") for m in marks(trend))
        else:
            assert marks(trend) == []
            assert no_data in trend.text
        # The reference lines are drawn whatever the data: target and deadline, labelled.
        assert trend.find_all(lambda n: {"ref", "target"} <= n.classes)
        assert trend.find_all(lambda n: {"ref", "deadline"} <= n.classes)
        ticks = [n.text for n in trend.find_all(lambda n: "tick" in n.classes)]
        assert ticks and all(t.endswith("%") for t in ticks if not re.search(r"\d{4}", t))
        shown = section.rows[:MAX_CHART_UNITS]
        bars = [m for m in marks(units) if m.tag == "rect"]
        assert len(bars) == sum(r.actual is not None for r in shown)
        if has_unit_data(section):
            assert len(units.find_all(lambda n: "expected" in n.classes)) == len(shown)
        else:
            assert no_data in units.text


def test_the_trend_line_breaks_where_a_month_has_no_value_and_the_glide_path_reaches_the_deadline() -> None:
    report = sample_report()
    section = report.targets[0]
    history = tuple(Point(p.day, None) if i == 4 else p for i, p in enumerate(section.history))
    trajectory = (Point(date(2025, 1, 1), 0.5), Point(date(2027, 6, 30), 0.9))
    changed = dataclasses.replace(report, targets=(dataclasses.replace(section, history=history,
                                                                       trajectory=trajectory),))
    _, root = page(changed)
    (trend,) = [c for c in charts(root) if c.attrs["data-chart"].endswith("-trend")]
    lines = [m for m in marks(trend) if m.tag == "polyline"]
    assert len(lines) == 2  # months 1–4, then 6–10: no line across the missing month
    assert len([m for m in marks(trend) if "point" in m.classes]) == 9
    (path,) = trend.find_all(lambda n: "trajectory" in n.classes)
    corners = [tuple(map(float, p.split(","))) for p in path.attrs["points"].split()]
    (deadline,) = trend.find_all(lambda n: n.tag == "line" and {"ref", "deadline"} <= n.classes)
    assert len(corners) == 3 and corners[-1][1] == corners[-2][1]  # held flat after the last corner
    assert corners[-1][0] == pytest.approx(float(deadline.attrs["x1"]))


def test_the_units_chart_shows_the_thirty_worst_and_says_so() -> None:
    report = sample_report("en")
    section = report.targets[0]
    rows = tuple(dataclasses.replace(section.rows[i % len(section.rows)], unit=f"U{i:03d}", unit_name=f"Unit {i}")
                 for i in range(45))
    _, root = page(dataclasses.replace(report, targets=(dataclasses.replace(section, rows=rows),)))
    (units,) = [c for c in charts(root) if c.attrs["data-chart"].endswith("-units")]
    assert len(marks(units)) == MAX_CHART_UNITS
    labels = [n.children[0] for n in units.find_all(lambda n: "unit-label" in n.classes)]
    assert labels == [f"Unit {i}" for i in range(MAX_CHART_UNITS)]  # the first (worst) thirty, in order
    assert "The 30 worst of 45 units" in root.text
    (table,) = root.find_all(lambda n: n.tag == "table" and "rows" in n.classes)
    assert len(table.find_all(lambda n: n.tag == "tr" and "data-unit" in n.attrs)) == 45


def test_texts_and_numbers_follow_the_language() -> None:
    _, vi = page(sample_report("vi"))
    _, en = page(sample_report("en"))
    vi_text, en_text = vi.text, en.text
    for phrase in ("Báo cáo khoảng cách mục tiêu Chính phủ điện tử", "Tổng hợp trạng thái", "Chậm tiến độ",
                   "thiếu 18,0 điểm %", "62,0 %", "không đạt được theo xu hướng hiện tại", "22/11/2026",
                   "Cách đọc báo cáo", "chưa kiểm chứng", "1/2", "Chỉ số tổng hợp", "72,5 / 100,0"):
        assert phrase in vi_text, phrase
    for phrase in ("E-government target gap report", "Status summary", "Behind", "18.0 pts behind", "62.0%",
                   "not reachable at the current trend", "2026-11-22", "How to read this report", "unverified",
                   "Composite scores", "72.5 / 100.0", "Vietnam time"):
        assert phrase in en_text, phrase
    for phrase in ("Tổng hợp trạng thái", "Chậm tiến độ", "điểm %", "Cách đọc", "Hạn hoàn thành"):
        assert phrase not in en_text, phrase


def test_citations_link_only_web_urls_and_unverified_ones_are_marked() -> None:
    report = sample_report()
    first, second = report.targets
    _, root = page(dataclasses.replace(report, targets=(
        first, dataclasses.replace(second, citation_url="javascript:alert(1)"))))
    sections = {n.attrs["data-rule"]: n for n in root.find_all(lambda n: n.tag == "section" and "data-rule" in n.attrs)}
    (link,) = sections[first.rule].find_all(lambda n: n.tag == "a" and "citation" in n.classes)
    assert link.attrs["href"] == first.citation_url and link.text == first.citation
    assert not sections[first.rule].find_all(lambda n: "unverified" in n.classes)
    assert not sections[second.rule].find_all(lambda n: n.tag == "a")
    assert sections[second.rule].find_all(lambda n: "unverified" in n.classes)


def test_a_report_without_targets_or_scores_still_renders() -> None:
    report = dataclasses.replace(sample_report(), targets=(), scores=(),
                                 status_counts=dict.fromkeys(REPORT_STATUSES, 0))
    _, root = page(report)
    assert charts(root) == []
    assert TEXTS["vi"]["no_targets"] in root.text and TEXTS["vi"]["no_scores"] in root.text


def test_edge_cases_render_without_marks_and_say_there_is_no_data() -> None:
    report = sample_report("en")
    section = dataclasses.replace(
        report.targets[0], comparator="<=", target=0.05, rows=(), trajectory=(),
        history=tuple(Point(p.day, None) for p in report.targets[0].history),
        status_counts=dict.fromkeys(REPORT_STATUSES, 0), headline_unit="not-a-unit")
    _, root = page(dataclasses.replace(report, targets=(section,), units=()))
    found = charts(root)
    assert [c.attrs["data-chart"] for c in found] == [f"{section.rule}-trend", f"{section.rule}-units"]
    assert all(marks(c) == [] for c in found)
    assert TEXTS["en"]["no_data"] in found[0].text and TEXTS["en"]["no_rows"] in found[1].text
    assert "≤ 5.0%" in root.text


def test_print_css_breaks_pages_between_targets_and_keeps_rows_whole() -> None:
    markup, _ = page(sample_report())
    print_css = markup[markup.index("@media print"):]
    assert re.search(r"section\.target\s*\{[^}]*break-before:\s*page", print_css)
    assert re.search(r"tr[^{]*\{[^}]*break-inside:\s*avoid", print_css)
    assert "display: table-header-group" in print_css


# --------------------------------------------------------------------------- real Chromium

# Per chart, as the browser laid it out: size, marks, marks with a non-empty box, visible "no data".
CHART_PROBE = """
[...document.querySelectorAll('svg.chart')].map(svg => {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll('.mark')];
  const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
  const noData = [...svg.querySelectorAll('.no-data')].filter(t => t.getBBox().width > 0);
  return {chart: svg.dataset.chart, width: box.width, height: box.height,
          marks: marks.length, drawn: drawn.length, noData: noData.length};
})
"""


@pytest.mark.parametrize("language", ["vi", "en"])
def test_headless_chromium_renders_the_page_without_errors(language: str, tmp_path: Path) -> None:
    require_chromium()
    report = sample_report(language)
    html_path = tmp_path / f"gap-{language}.html"
    html_path.write_bytes(render_html(report))
    screenshot = tmp_path / "gap.png"

    result = chromium_render(html_path, screenshot, script=CHART_PROBE)

    data = screenshot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000, f"a {len(data)}-byte screenshot is not the page"
    assert result.errors == [], result.console
    assert result.requests == [html_path.resolve().as_uri()]  # the page itself, nothing else
    root = parse(result.dom)
    found = charts(root)
    assert len(found) == 2 * len(report.targets)
    by_name = {c.attrs["data-chart"]: c for c in found}
    expect = {}
    for section in report.targets:
        expect[f"{section.rule}-trend"] = has_trend_data(section)
        expect[f"{section.rule}-units"] = has_unit_data(section)
    assert set(by_name) == set(expect)
    for name, with_data in expect.items():
        assert (len(marks(by_name[name])) >= 1) == with_data, name
    # And as laid out: every chart has a size, every mark a box, "no data" is visible.
    laid_out = {c["chart"]: c for c in result.value}
    assert set(laid_out) == set(expect)
    for name, with_data in expect.items():
        chart = laid_out[name]
        assert chart["width"] > 300 and chart["height"] > 50, chart
        assert chart["drawn"] == chart["marks"], chart
        assert (chart["drawn"] >= 1, chart["noData"] == 0) == (with_data, with_data), chart


PRINT_PROBE = """
({sections: [...document.querySelectorAll('section.target')].map(s => getComputedStyle(s).breakBefore),
  rows: [...document.querySelectorAll('table.rows tbody tr')].map(r => getComputedStyle(r).breakInside),
  headers: [...document.querySelectorAll('table.rows thead')].map(h => getComputedStyle(h).display)})
"""


def test_headless_chromium_applies_the_print_style_sheet(tmp_path: Path) -> None:
    require_chromium()
    report = sample_report()
    html_path = tmp_path / "gap.html"
    html_path.write_bytes(render_html(report))
    result = chromium_render(html_path, tmp_path / "print.png", media="print", script=PRINT_PROBE)
    assert result.errors == [], result.console
    assert result.value["sections"] == ["page"] * len(report.targets)
    assert set(result.value["rows"]) == {"avoid"} and len(result.value["rows"]) == len(report.rows)
    assert set(result.value["headers"]) == {"table-header-group"}


def test_the_chromium_harness_reports_console_errors_and_outside_loads(tmp_path: Path) -> None:
    """The assertions above can fail: console errors, uncaught exceptions, failed loads and a
    blocked external asset in our own page all reach ``errors`` and ``requests``."""
    require_chromium()
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><img src='missing.png'><script>"
                      "console.error('boom-console'); throw new Error('boom-uncaught')</script></body></html>")
    result = chromium_render(broken, tmp_path / "broken.png")
    joined = "\n".join(result.errors)
    assert "boom-console" in joined and "boom-uncaught" in joined and "ERR_FILE_NOT_FOUND" in joined

    injected = render_html(sample_report()).decode("utf-8").replace(
        "<main>", '<main><img alt="" src="https://example.invalid/logo.png">', 1)
    page_path = tmp_path / "injected.html"
    page_path.write_text(injected, encoding="utf-8")
    result = chromium_render(page_path, tmp_path / "injected.png")
    assert "https://example.invalid/logo.png" in result.requests
    assert any("Content Security Policy" in e for e in result.errors), result.errors
