"""Grafana dashboard JSON models for the monitor's Prometheus metrics.

``build_dashboards(catalog, language)`` returns ``{uid: dashboard}``; ``write_dashboards``
writes them (sorted keys, trailing newline: byte-reproducible) under one folder per
audience, with Grafana file-provisioning YAML beside them.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from monitor.catalog import Catalog

SCHEMA_VERSION = 39
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
DATASOURCE_UID = "egovmon-prometheus"
PROMETHEUS_URL = "http://127.0.0.1:9090"

# folder (directory) -> dashboard uids; folder titles per language
FOLDERS: dict[str, tuple[str, ...]] = {
    "lanh-dao": ("egovmon-overview", "egovmon-target"),
    "don-vi": ("egovmon-unit",),
    "van-hanh": ("egovmon-health",),
}
FOLDER_TITLES = {
    "vi": {"lanh-dao": "Lãnh đạo", "don-vi": "Đơn vị", "van-hanh": "Vận hành"},
    "en": {"lanh-dao": "Leadership", "don-vi": "Units", "van-hanh": "Operations"},
}

# Counters whose children appear only after the first event: show 0, not "No data".
_ZERO = " or vector(0)"


def _t(language: str, vi: str, en: str) -> str:
    return en if language == "en" else vi


class _Dashboard:
    """Accumulates panels with unique ids and a simple left-to-right, top-to-bottom layout."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self.uid = uid
        self.title = title
        self.description = description
        self.tags = tags
        self.panels: list[dict[str, Any]] = []
        self.variables: list[dict[str, Any]] = []
        self._next_id = 1
        self._x = 0
        self._y = 0
        self._row_height = 0

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self._x + w > 24:
            self._x = 0
            self._y += self._row_height
            self._row_height = 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_height = max(self._row_height, h)
        return pos

    def row(self, title: str) -> None:
        if self._x:
            self._x = 0
            self._y += self._row_height
            self._row_height = 0
        self.panels.append({"id": self._next_id, "type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y}, "panels": []})
        self._next_id += 1
        self._y += 1

    def panel(self, kind: str, title: str, targets: list[dict[str, Any]], *, w: int = 12, h: int = 8,
              description: str = "", unit: str | None = None, options: dict[str, Any] | None = None,
              transformations: list[dict[str, Any]] | None = None,
              overrides: list[dict[str, Any]] | None = None,
              minimum: float | None = None, maximum: float | None = None) -> None:
        defaults: dict[str, Any] = {}
        if unit is not None:
            defaults["unit"] = unit
        if minimum is not None:
            defaults["min"] = minimum
        if maximum is not None:
            defaults["max"] = maximum
        refs = "ABCDEFGHIJ"
        panel: dict[str, Any] = {
            "id": self._next_id,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": dict(DATASOURCE),
            "gridPos": self._place(w, h),
            "targets": [{**t, "datasource": dict(DATASOURCE), "refId": refs[i]} for i, t in enumerate(targets)],
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        self._next_id += 1
        self.panels.append(panel)

    def query_variable(self, name: str, label: str, query: str, *, include_all: bool = False) -> None:
        self.variables.append({
            "name": name, "label": label, "type": "query", "datasource": dict(DATASOURCE),
            "definition": query, "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "sort": 1, "multi": False, "includeAll": include_all, "hide": 0,
            "current": {}, "options": [], "regex": "",
        })

    def model(self, language: str) -> dict[str, Any]:
        datasource_var = {
            "name": "datasource", "label": _t(language, "Nguồn dữ liệu", "Data source"),
            "type": "datasource", "query": "prometheus", "current": {}, "hide": 0,
            "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": "",
        }
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["egovmon", *self.tags],
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "refresh": "5m",
            "time": {"from": "now-30d", "to": "now"},
            "timezone": "Asia/Ho_Chi_Minh",
            "weekStart": "monday",
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "annotations": {"list": []},
            "links": [{"type": "dashboards", "tags": ["egovmon"], "asDropdown": True, "includeVars": False,
                       "keepTime": True, "title": _t(language, "Bảng khác", "Other dashboards"),
                       "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
            "templating": {"list": [datasource_var, *self.variables]},
            "panels": self.panels,
        }


def _q(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"expr": expr, "legendFormat": legend or "__auto", "range": not instant,
                              "instant": instant, "editorMode": "code"}
    if table:
        target["format"] = "table"
    return target


def _table_options() -> dict[str, Any]:
    return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}}


def _stat_options() -> dict[str, Any]:
    return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value", "graphMode": "none", "textMode": "auto", "orientation": "auto",
            "justifyMode": "auto"}


def _organize(hide: list[str], rename: dict[str, str]) -> dict[str, Any]:
    return {"id": "organize", "options": {"excludeByName": {name: True for name in hide},
                                          "renameByName": rename, "indexByName": {}}}


def _sort(field: str, desc: bool) -> dict[str, Any]:
    return {"id": "sortBy", "options": {"fields": {}, "sort": [{"field": field, "desc": desc}]}}


_HIDDEN = ["Time", "__name__", "instance", "job"]


def _with_name(expr: str) -> str:
    """Join the unit's display name from the registry (``egov_unit_info``)."""
    return f"({expr}) * on (unit) group_left (name) egov_unit_info"


def _overview(language: str) -> dict[str, Any]:
    t = partial(_t, language)
    d = _Dashboard("egovmon-overview", t("Tổng quan tỉnh", "Province overview"),
                   t("Điểm tổng hợp, tình trạng các chỉ tiêu, đơn vị chậm tiến độ và các mốc sắp đến hạn.",
                     "Composite scores, target status, lagging units and deadlines ahead."), ["lanh-dao"])
    d.row(t("Điểm và xếp hạng", "Scores and ranks"))
    d.panel("stat", t("Điểm tổng hợp của tỉnh", "Province composite score"),
            [_q('egov_score_scaled{level="province"}', "{{index}}", instant=True)], w=8, h=6, unit="none",
            description=t("Điểm quy đổi thang 100 theo từng bộ chỉ số.", "Scaled score (0–100) per index."),
            options=_stat_options(), minimum=0, maximum=100)
    d.panel("bargauge", t("Điểm các sở, ngành", "Department scores"),
            [_q(_with_name('egov_score_scaled{level="department"}'), "{{name}} · {{index}}", instant=True)],
            w=16, h=12, unit="none", minimum=0, maximum=100,
            options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})
    d.panel("table", t("Thứ hạng trong nhóm", "Rank within group"),
            [_q(_with_name('egov_score_rank{level!="province"} <= 5'), instant=True, table=True)], w=8, h=6,
            description=t("Năm đơn vị đứng đầu mỗi nhóm.", "Top five of each group."),
            options=_table_options(),
            transformations=[_organize([*_HIDDEN, "parent"], {"Value": t("Hạng", "Rank")}),
                             _sort(t("Hạng", "Rank"), False)])
    d.row(t("Tình trạng chỉ tiêu", "Target status"))
    d.panel("stat", t("Số chỉ tiêu theo tình trạng", "Targets by status"),
            [_q("count by (status) (egov_target_status == 1)", "{{status}}", instant=True)], w=24, h=5,
            description=t("Mỗi cặp (quy tắc, đơn vị) đếm một lần.", "Each (rule, unit) pair counts once."),
            options=_stat_options())
    d.panel("table", t("Đơn vị chậm tiến độ nhất", "Most lagging units"),
            [_q(_with_name("topk(20, egov_target_gap)"), instant=True, table=True)], w=24, h=10,
            description=t("Khoảng cách so với lộ trình (kỳ vọng − thực tế), lớn nhất trước.",
                          "Gap to trajectory (expected − actual), worst first."),
            unit="percentunit", options=_table_options(),
            transformations=[_organize(_HIDDEN, {"Value": t("Khoảng cách", "Gap")}),
                             _sort(t("Khoảng cách", "Gap"), True)])
    d.row(t("Chỉ tiêu của tỉnh so với lộ trình", "Province KPIs against trajectory"))
    d.panel("timeseries", t("Thực tế và lộ trình (cấp tỉnh)", "Actual and trajectory (province)"),
            [_q('egov_target_actual{level="province"}', "{{kpi}} — " + t("thực tế", "actual")),
             _q('egov_target_expected{level="province"}', "{{kpi}} — " + t("lộ trình", "expected"))],
            w=24, h=10, unit="percentunit", minimum=0, maximum=1)
    d.row(t("Mốc thời hạn", "Deadlines"))
    d.panel("table", t("Các mốc sắp đến hạn", "Deadlines ahead"),
            [_q("min by (rule, kpi) (egov_target_deadline_timestamp_seconds > time()) * 1000",
                instant=True, table=True)], w=24, h=8, unit="dateTimeAsIso", options=_table_options(),
            transformations=[_organize(_HIDDEN, {"Value": t("Hạn", "Deadline")}),
                             _sort(t("Hạn", "Deadline"), False)])
    return d.model(language)


def _unit(catalog: Catalog, language: str) -> dict[str, Any]:
    t = partial(_t, language)
    d = _Dashboard("egovmon-unit", t("Chi tiết đơn vị", "Unit detail"),
                   t("Các chỉ số của một đơn vị so với chỉ tiêu và lộ trình, dự báo và thứ hạng trong nhóm.",
                     "One unit's KPIs against targets and trajectories, forecasts and rank in group."), ["don-vi"])
    d.query_variable("level", t("Cấp", "Level"), "label_values(egov_unit_info, level)")
    d.query_variable("group", t("Nhóm", "Group"), 'label_values(egov_unit_info{level="$level"}, group)')
    d.query_variable("unit", t("Đơn vị", "Unit"),
                     'label_values(egov_unit_info{level="$level", group="$group"}, unit)')
    name_label = "name_en" if language == "en" else "name"
    d.row(t("Đơn vị", "Unit"))
    d.panel("table", t("Thông tin đơn vị", "Unit"), [_q('egov_unit_info{unit="$unit"}', instant=True, table=True)],
            w=12, h=4, options=_table_options(), transformations=[_organize([*_HIDDEN, "Value"], {})])
    d.panel("stat", t("Thứ hạng trong nhóm", "Rank in group"),
            [_q('egov_score_rank{unit="$unit"}', "{{index}}", instant=True),
             _q('egov_score_rank_size{group="$group"}', "{{index}} / n", instant=True)],
            w=6, h=4, options=_stat_options())
    d.panel("stat", t("Điểm (thang 100)", "Score (0–100)"),
            [_q('egov_score_scaled{unit="$unit"}', "{{index}}", instant=True)], w=6, h=4,
            options=_stat_options(), minimum=0, maximum=100)
    d.row(t("Chỉ tiêu và lộ trình", "Targets and trajectories"))
    d.panel("table", t("Chỉ tiêu áp dụng", "Targets that apply"),
            [_q('egov_target_actual{unit="$unit"}', instant=True, table=True),
             _q('egov_target_expected{unit="$unit"}', instant=True, table=True),
             _q('egov_target_value{unit="$unit"}', instant=True, table=True),
             _q('egov_target_gap_to_target{unit="$unit"}', instant=True, table=True),
             _q('egov_target_status{unit="$unit"} == 1', instant=True, table=True)],
            w=24, h=8, unit="percentunit", options=_table_options(),
            transformations=[{"id": "merge", "options": {}},
                             _organize([*_HIDDEN, "unit", "level", "group", "Value #E"],
                                       {"Value #A": t("Thực tế", "Actual"), "Value #B": t("Lộ trình", "Expected"),
                                        "Value #C": t("Chỉ tiêu", "Target"),
                                        "Value #D": t("Còn thiếu", "Gap to target")})])
    d.panel("timeseries", t("Thực tế so với lộ trình", "Actual against trajectory"),
            [_q('egov_target_actual{unit="$unit"}', "{{rule}} — " + t("thực tế", "actual")),
             _q('egov_target_expected{unit="$unit"}', "{{rule}} — " + t("lộ trình", "expected"))],
            w=24, h=9, unit="percentunit", minimum=0, maximum=1)
    d.row(t("Dự báo", "Forecasts"))
    d.panel("table", t("Giá trị dự báo tại hạn", "Forecast at the deadline"),
            [_q('egov_target_forecast_value{unit="$unit"}', instant=True, table=True),
             _q('egov_target_deadline_timestamp_seconds{unit="$unit"} * 1000', instant=True, table=True)],
            w=12, h=8, options=_table_options(),
            overrides=[{"matcher": {"id": "byName", "options": "Value #A"},
                        "properties": [{"id": "unit", "value": "percentunit"}]},
                       {"matcher": {"id": "byName", "options": "Value #B"},
                        "properties": [{"id": "unit", "value": "dateTimeAsIso"}]}],
            transformations=[{"id": "merge", "options": {}},
                             _organize([*_HIDDEN, "unit", "level", "group"], {})])
    d.panel("table", t("Ngày dự kiến đạt chỉ tiêu", "Forecast date of reaching the target"),
            [_q('egov_target_forecast_reached_timestamp_seconds{unit="$unit"} * 1000', instant=True, table=True),
             _q('egov_target_forecast_points{unit="$unit"}', instant=True, table=True)],
            w=12, h=8, options=_table_options(),
            overrides=[{"matcher": {"id": "byName", "options": "Value #A"},
                        "properties": [{"id": "unit", "value": "dateTimeAsIso"}]}],
            transformations=[{"id": "merge", "options": {}},
                             _organize([*_HIDDEN, "unit", "level", "group"], {})])
    d.row(t("Tất cả chỉ số", "All KPIs"))
    d.panel("table", t("Chỉ số của đơn vị", "The unit's KPIs"),
            [_q(f'egov_kpi_value{{unit="$unit"}} * on (kpi) group_left ({name_label}) egov_kpi_info',
                instant=True, table=True)],
            w=24, h=10, unit="percentunit", options=_table_options(),
            transformations=[_organize([*_HIDDEN, "unit", "level", "group"], {})])
    for kpi_id, kpi in catalog.kpis.items():
        title = kpi.en if language == "en" else kpi.vi
        d.row(title)
        selector = f'kpi="{kpi_id}", unit="$unit"'
        d.panel("timeseries", title, [_q(f"egov_kpi_value{{{selector}}}", "{{window}}")], w=16, h=7,
                description=(kpi.description or "") + f" ({kpi_id})", unit="percentunit", minimum=0, maximum=1)
        d.panel("stat", t("Tử số, mẫu số, đơn vị báo cáo", "Numerator, denominator, units reporting"),
                [_q(f"egov_kpi_numerator{{{selector}}}", t("tử số", "numerator") + " · {{window}}", instant=True),
                 _q(f"egov_kpi_denominator{{{selector}}}", t("mẫu số", "denominator") + " · {{window}}",
                    instant=True),
                 _q(f"egov_kpi_units_reporting{{{selector}}}", t("đơn vị", "units") + " · {{window}}",
                    instant=True)],
                w=8, h=7, options=_stat_options())
    return d.model(language)


def _target(language: str) -> dict[str, Any]:
    t = partial(_t, language)
    d = _Dashboard("egovmon-target", t("Chi tiết chỉ tiêu", "Target detail"),
                   t("Một quy tắc chỉ tiêu (văn bản, hạn) trên mọi đơn vị áp dụng: thực tế so với lộ trình.",
                     "One target rule (instrument, deadline) across every unit it covers: actual against expected."),
                   ["lanh-dao"])
    d.query_variable("rule", t("Chỉ tiêu", "Target"), "label_values(egov_target_actual, rule)")
    d.panel("table", t("Căn cứ", "Source"), [_q('egov_target_info{rule="$rule"}', instant=True, table=True)],
            w=16, h=5, options=_table_options(), transformations=[_organize([*_HIDDEN, "Value"], {})])
    d.panel("stat", t("Hạn", "Deadline"),
            [_q('min(egov_target_deadline_timestamp_seconds{rule="$rule"}) * 1000', instant=True)],
            w=8, h=5, unit="dateTimeAsIso", options=_stat_options())
    d.panel("stat", t("Số đơn vị theo tình trạng", "Units by status"),
            [_q('count by (status) (egov_target_status{rule="$rule"} == 1)', "{{status}}", instant=True)],
            w=24, h=5, options=_stat_options())
    d.panel("timeseries", t("Số đơn vị chậm so với lộ trình", "Units behind trajectory"),
            [_q(f'count(egov_target_gap{{rule="$rule"}} > 0){_ZERO}', t("chậm", "behind"))], w=24, h=7)
    d.panel("table", t("Các đơn vị: thực tế, lộ trình, chỉ tiêu", "Units: actual, expected, target"),
            [_q(_with_name('egov_target_actual{rule="$rule"}'), instant=True, table=True),
             _q('egov_target_expected{rule="$rule"}', instant=True, table=True),
             _q('egov_target_value{rule="$rule"}', instant=True, table=True),
             _q('egov_target_gap{rule="$rule"}', instant=True, table=True)],
            w=24, h=14, unit="percentunit", options=_table_options(),
            transformations=[{"id": "merge", "options": {}},
                             _organize([*_HIDDEN, "rule"],
                                       {"Value #A": t("Thực tế", "Actual"), "Value #B": t("Lộ trình", "Expected"),
                                        "Value #C": t("Chỉ tiêu", "Target"), "Value #D": t("Khoảng cách", "Gap")}),
                             _sort(t("Khoảng cách", "Gap"), True)])
    return d.model(language)


def _health(language: str) -> dict[str, Any]:
    t = partial(_t, language)
    d = _Dashboard("egovmon-health", t("Tình trạng thu thập", "Collection health"),
                   t("Nguồn dữ liệu, thời gian thu thập, bản ghi bị loại, hàng đợi thư và cảnh báo.",
                     "Sources, collection durations, rejected records, the e-mail outbox and alerts."), ["van-hanh"])
    d.row(t("Nguồn dữ liệu", "Sources"))
    d.panel("stat", t("Nguồn hoạt động", "Source up"), [_q("egov_source_up", "{{source}}", instant=True)],
            w=8, h=5, options=_stat_options(),
            description=t("1 nếu lần thu thập gần nhất thành công.", "1 if the last collection succeeded."))
    d.panel("stat", t("Thời gian từ lần thu thập thành công", "Since the last successful collection"),
            [_q("time() - egov_source_last_success_timestamp_seconds", "{{source}}", instant=True)],
            w=8, h=5, unit="s", options=_stat_options())
    d.panel("stat", t("Độ trễ dữ liệu (watermark)", "Data lag (watermark)"),
            [_q("time() - egov_source_watermark_timestamp_seconds", "{{source}}", instant=True)],
            w=8, h=5, unit="s", options=_stat_options())
    d.panel("timeseries", t("Thời gian thu thập trung bình", "Mean collection duration"),
            [_q("sum by (source) (egov_collection_duration_seconds_sum) / "
                "sum by (source) (egov_collection_duration_seconds_count)", "{{source}}")], w=12, h=8, unit="s")
    d.panel("timeseries", t("Lỗi thu thập và thử lại", "Collection errors and retries"),
            [_q(f"sum by (source, reason) (increase(egov_collection_errors_total[$__range])){_ZERO}",
                t("lỗi", "errors") + " {{source}} {{reason}}"),
             _q(f"sum by (source, reason) (increase(egov_collection_retries_total[$__range])){_ZERO}",
                t("thử lại", "retries") + " {{source}} {{reason}}")], w=12, h=8)
    d.panel("timeseries", t("Bản ghi lưu và bị loại", "Observations stored and rejected"),
            [_q(f"sum by (source) (increase(egov_observations_stored_total[$__range])){_ZERO}",
                t("lưu", "stored") + " {{source}}"),
             _q(f"sum by (source, reason) (increase(egov_observations_rejected_total[$__range])){_ZERO}",
                t("loại", "rejected") + " {{source}} {{reason}}")], w=12, h=8)
    d.panel("stat", t("Tính toán chỉ số", "KPI computation"),
            [_q("time() - egov_kpi_computed_timestamp_seconds", t("tuổi", "age"), instant=True),
             _q("egov_kpi_computation_duration_seconds", t("thời gian tính", "duration"), instant=True),
             _q("egov_evaluation_duration_seconds", t("thời gian đánh giá", "evaluation"), instant=True),
             _q("egov_rules_loaded", t("số quy tắc", "rules loaded"), instant=True),
             _q("egov_rules_last_reload_success", t("nạp lại quy tắc thành công", "rules reload ok"), instant=True),
             _q("egov_config_last_reload_success", t("nạp lại cấu hình thành công", "config reload ok"),
                instant=True)],
            w=12, h=8, options=_stat_options())
    d.row(t("Thư điện tử", "E-mail"))
    d.panel("timeseries", t("Hàng đợi thư theo trạng thái", "Outbox by status"),
            [_q("egov_outbox_messages", "{{status}}")], w=8, h=8)
    d.panel("stat", t("Thư chờ lâu nhất", "Oldest pending message"),
            [_q("egov_outbox_oldest_pending_age_seconds", t("tuổi", "age"), instant=True)],
            w=8, h=8, unit="s", options=_stat_options())
    d.panel("timeseries", t("Gửi thư theo kết quả", "E-mail deliveries by outcome"),
            [_q(f"sum by (outcome) (increase(egov_email_deliveries_total[$__range])){_ZERO}", "{{outcome}}"),
             _q(f"sum by (outcome) (increase(egov_alertmanager_forwards_total[$__range])){_ZERO}",
                "Alertmanager {{outcome}}")], w=8, h=8)
    d.row(t("Cảnh báo", "Alerts"))
    d.panel("stat", t("Cảnh báo đang phát", "Alerts firing"),
            [_q('sum by (kind) (egov_alerts{state="firing"})', "{{kind}}", instant=True)],
            w=8, h=6, options=_stat_options())
    d.panel("timeseries", t("Cảnh báo theo trạng thái", "Alerts by state"),
            [_q("egov_alerts", "{{kind}} {{state}}"),
             _q("egov_alerts_inhibited", t("bị ức chế", "inhibited")),
             _q("sum(egov_alerts_held)" + _ZERO, t("bị giữ lại", "held")),
             _q("egov_silences_active", t("im lặng", "silences"))], w=8, h=6)
    d.panel("timeseries", t("Thông báo đã gửi", "Notifications sent"),
            [_q(f"sum by (kind) (increase(egov_notifications_total[$__range])){_ZERO}", "{{kind}}")], w=8, h=6)
    return d.model(language)


def build_dashboards(catalog: Catalog, language: str = "vi") -> dict[str, dict[str, Any]]:
    """Grafana dashboard JSON models keyed by uid."""
    if language not in ("vi", "en"):
        raise ValueError(f"language must be 'vi' or 'en', not {language!r}")
    dashboards = [_overview(language), _unit(catalog, language), _target(language), _health(language)]
    return {d["uid"]: d for d in dashboards}


def render_json(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def provisioning_files(language: str = "vi") -> dict[str, str]:
    """Grafana file-provisioning YAML, keyed by path relative to the output directory."""
    datasource = (
        "# Generated by `egovmon dashboards build`; do not edit.\n"
        "apiVersion: 1\n"
        "datasources:\n"
        "  - name: egovmon Prometheus\n"
        "    type: prometheus\n"
        f"    uid: {DATASOURCE_UID}\n"
        "    access: proxy\n"
        f"    url: {PROMETHEUS_URL}\n"
        "    isDefault: false\n"
        "    editable: true\n"
    )
    lines = [
        "# Generated by `egovmon dashboards build`; do not edit.",
        "# EGOVMON_DASHBOARDS_DIR is the absolute path of this repository's dashboards/ directory.",
        "apiVersion: 1",
        "providers:",
    ]
    for folder in FOLDERS:
        lines += [
            f"  - name: egovmon-{folder}",
            "    type: file",
            f"    folder: {json.dumps(FOLDER_TITLES[language][folder], ensure_ascii=False)}",
            f"    folderUid: egovmon-{folder}",
            "    disableDeletion: false",
            "    allowUiUpdates: false",
            "    updateIntervalSeconds: 60",
            "    options:",
            f"      path: ${{EGOVMON_DASHBOARDS_DIR}}/{folder}",
        ]
    return {"provisioning/datasources/egovmon.yaml": datasource,
            "provisioning/dashboards/egovmon.yaml": "\n".join(lines) + "\n"}


def generated_files(catalog: Catalog, language: str = "vi") -> dict[str, str]:
    """Every generated file: relative path -> text."""
    dashboards = build_dashboards(catalog, language)
    files = {f"{folder}/{uid}.json": render_json(dashboards[uid]) for folder, uids in FOLDERS.items() for uid in uids}
    files.update(provisioning_files(language))
    return files


def write_dashboards(catalog: Catalog, out: Path, language: str = "vi") -> list[Path]:
    written = []
    for relative, text in generated_files(catalog, language).items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written
