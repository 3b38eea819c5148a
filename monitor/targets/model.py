"""The rule-file schema (``version: 1``): what a target rule may say.

A rule reads "units U must bring KPI K, over window W, to ``comparator target``
by ``deadline``, starting from ``baseline``, along ``trajectory``". Everything
the evaluator, the alerting and the reports need is here, including the
citation of the instrument that set the target. Checks that need the catalog or
the unit tree (an unknown KPI, an unknown unit code, duplicate ids across files)
are in ``monitor.targets.loader``.
"""

from __future__ import annotations

import datetime as dt
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from monitor.config import Duration
from monitor.units import QCVN102_CODE, Level
from monitor.windows import Window

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")]
Comparator = Literal[">=", "<="]
Severity = Literal["info", "warning", "critical"]
# Who gets told: the covered unit's head, its parent's head, the head of the root
# unit (the provincial leadership), or a literal address.
ROLE_RECIPIENTS = ("unit_head", "parent_head", "province_head")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PERCENT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*%\s*$")


def _ratio(value: Any) -> Any:
    """Ratios are written 0–1 (``0.9``) or as a percentage string (``"90%"``).

    A bare number above 1 is refused rather than guessed at: ``90`` is the most
    common mistake in a rule file and would make every unit "behind" forever.
    """
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if not match:
            raise ValueError(f"write a ratio as 0.9 or '90%', got: {value!r}")
        return float(match.group(1)) / 100
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"write a ratio as 0.9 or '90%', got: {value!r}")
    if value > 1:
        raise ValueError(f"ratios are written 0–1: {value} would mean {value * 100:g} %; "
                         f"write {value / 100:g} or '{value:g}%'")
    if value < 0:
        raise ValueError(f"a ratio cannot be negative, got: {value}")
    return float(value)


Ratio = Annotated[float, BeforeValidator(_ratio), Field(ge=0, le=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Citation(_Frozen):
    """The instrument that set the target. ``verified: false`` marks a figure the
    domain reference could not confirm from a primary or reliable secondary text."""

    instrument: Annotated[str, Field(min_length=3)]  # e.g. "QĐ 942/QĐ-TTg"
    date: dt.date
    title: Annotated[str, Field(min_length=3)]
    url: str | None = None
    verified: bool = True
    note: str | None = None

    @model_validator(mode="after")
    def _unverified_needs_note(self) -> Citation:
        if not self.verified and not self.note:
            raise ValueError("an unverified citation needs a 'note' saying what is not confirmed")
        return self


class UnitSelector(_Frozen):
    """Which units a rule covers, on each evaluation day.

    A unit is covered when it matches every criterion given: its level is one
    of ``levels``, its group one of ``groups``, and it is one of ``codes`` (or,
    with ``descendants: true``, below one of them). ``exclude`` removes codes.
    Each covered unit is evaluated over its subtree (``scope: subtree``, the
    default: a district's value includes its communes) or its own data only.
    """

    levels: tuple[Level, ...] = ()
    groups: tuple[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")], ...] = ()
    codes: tuple[str, ...] = ()
    descendants: bool = False
    exclude: tuple[str, ...] = ()
    scope: Literal["subtree", "self"] = "subtree"

    @field_validator("codes", "exclude")
    @classmethod
    def _qcvn102(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not QCVN102_CODE.match(code):
                raise ValueError(f"not a QCVN 102 identifier code (e.g. 000.00.31.H12), got: {code!r}")
        return value

    @model_validator(mode="after")
    def _something(self) -> UnitSelector:
        if not (self.levels or self.groups or self.codes):
            raise ValueError("say which units: give levels, groups or codes (or several)")
        if self.descendants and not self.codes:
            raise ValueError("'descendants: true' needs 'codes' to descend from")
        return self


class Baseline(_Frozen):
    """Where the glide path starts: a fixed value on a date, or each unit's own
    first observation (on or after ``since``)."""

    value: Ratio | None = None
    date: dt.date | None = None
    first_observation: bool = False
    since: dt.date | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"first_observation": True} if data == "first_observation" else data

    @model_validator(mode="after")
    def _one_kind(self) -> Baseline:
        if self.first_observation:
            if self.value is not None or self.date is not None:
                raise ValueError("give either value and date, or first_observation, not both")
        elif self.value is None or self.date is None:
            raise ValueError("a baseline needs both 'value' and 'date' (or write 'first_observation')")
        elif self.since is not None:
            raise ValueError("'since' only applies to first_observation")
        return self


class Milestone(_Frozen):
    date: dt.date
    value: Ratio


class Trajectory(_Frozen):
    """``none``: the target is the bar at every date. ``linear``: a straight glide
    path from the baseline to the target at the deadline. ``milestones``: a
    piecewise-linear path through the baseline, each dated milestone and the
    target at the deadline."""

    type: Literal["none", "linear", "milestones"] = "none"
    milestones: tuple[Milestone, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _milestones(self) -> Trajectory:
        if (self.type == "milestones") != bool(self.milestones):
            raise ValueError("type 'milestones' needs a list of milestones (date, value), and only it may have one")
        dates = [m.date for m in self.milestones]
        if dates != sorted(set(dates)):
            raise ValueError("milestone dates must be distinct and in order")
        return self


def _recipient(value: str) -> str:
    if value in ROLE_RECIPIENTS or _EMAIL.match(value):
        return value
    raise ValueError(f"a recipient is one of {', '.join(ROLE_RECIPIENTS)} or an email address, got: {value!r}")


Recipient = Annotated[str, BeforeValidator(lambda v: _recipient(str(v)))]


class Notify(_Frozen):
    """Who hears about a unit falling behind, and how patiently."""

    to: Annotated[tuple[Recipient, ...], Field(min_length=1)] = ("unit_head",)
    cc: tuple[Recipient, ...] = ()
    # An alert fires only after the status has been bad this long (one bad month
    # end is not a trend); reminders repeat at ``repeat``.
    for_: Annotated[Duration, Field(alias="for")] = timedelta(days=1)
    repeat: Duration = timedelta(days=7)


class Escalation(_Frozen):
    after: Duration
    to: Annotated[tuple[Recipient, ...], Field(min_length=1)]


class Forecast(_Frozen):
    """The trend is fitted to the KPI over the rule's window at the as-of date
    and at the end of each of the ``points - 1`` months before it."""

    points: Annotated[int, Field(ge=2, le=36)] = 6
    min_points: Annotated[int, Field(ge=2, le=36)] = 3

    @model_validator(mode="after")
    def _order(self) -> Forecast:
        if self.min_points > self.points:
            raise ValueError(f"min_points ({self.min_points}) cannot exceed points ({self.points})")
        return self


class Text(_Frozen):
    vi: str
    en: str | None = None


class TargetRule(_Frozen):
    id: RuleId
    kpi: str
    title: Text | None = None
    units: UnitSelector
    window: str | None = None  # default: the KPI's own window in the catalog
    comparator: Comparator | None = None  # default: from the KPI's direction
    target: Ratio
    deadline: dt.date
    baseline: Baseline | None = None
    trajectory: Trajectory = Trajectory()
    at_risk_margin: Ratio = 0.05
    resolve_margin: Ratio = 0.02
    stale_after: Duration = timedelta(days=7)
    forecast: Forecast = Forecast()
    severity: Severity = "warning"
    notify: Notify = Notify()
    escalate: tuple[Escalation, ...] = ()
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    citation: Citation

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            Window.parse(value)
        return value

    def valid_on(self, day: dt.date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or day <= self.valid_to)


class RuleFile(BaseModel):
    """One rule file. ``defaults`` are merged into every rule before validation."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    pack: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")] | None = None
    title: Text | None = None
    description: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    rules: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("defaults")
    @classmethod
    def _defaults(cls, value: dict[str, Any]) -> dict[str, Any]:
        allowed = set(TargetRule.model_fields) - {"id", "kpi", "target", "deadline"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown default(s) {', '.join(unknown)} (any rule field but id, kpi, target, deadline)")
        return value


def consistency_problems(rule: TargetRule) -> list[tuple[str, str]]:
    """Checks across fields, as (field, message): dates in order, a baseline for
    a trajectory, escalation steps in order."""
    found: list[tuple[str, str]] = []
    if rule.valid_from and rule.valid_to and rule.valid_from > rule.valid_to:
        found.append(("valid_to", f"valid_to {rule.valid_to} is before valid_from {rule.valid_from}"))
    if rule.trajectory.type != "none" and rule.baseline is None:
        found.append(("trajectory", f"a {rule.trajectory.type} trajectory needs a baseline "
                                    "(value and date, or first_observation)"))
    baseline_day = rule.baseline.date or rule.baseline.since if rule.baseline else None
    if baseline_day and baseline_day >= rule.deadline:
        found.append(("deadline", f"the deadline {rule.deadline} must come after the baseline date {baseline_day}"))
    for i, milestone in enumerate(rule.trajectory.milestones):
        if milestone.date >= rule.deadline:
            found.append((f"trajectory.milestones.{i}.date",
                          f"milestone {milestone.date} is not before the deadline {rule.deadline}"))
        if baseline_day and milestone.date <= baseline_day:
            found.append((f"trajectory.milestones.{i}.date",
                          f"milestone {milestone.date} is not after the baseline date {baseline_day}"))
    afters = [e.after for e in rule.escalate]
    if afters != sorted(set(afters)):
        found.append(("escalate", "escalation steps need distinct 'after' durations, in increasing order"))
    return found
