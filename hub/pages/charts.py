"""Charts of the coordination KPIs (``GET /v1/kpis``), drawn on the server as SVG with no script.

Each chart is one measure over the groups of the answer (services, agencies, nations' clocks, coordinators):
a horizontal bar per group with its value written at the bar's end, so no information is carried by colour
or length alone, and the page puts a table with the same figures and their counts beside it. Pure: it
shapes the KPI answer for the template (``_chart.html``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: the chart's geometry (SVG user units)
WIDTH, LEFT, BAR, GAP, TOP = 480, 180, 22, 10, 8  # drawn about 1:1 in half a GOV.UK page


@dataclass(frozen=True)
class Row:
    label: str
    value: float | None  # None: nothing to measure in the period
    text: str  # the value as the table and the bar's label say it
    counts: tuple[tuple[str, Any], ...] = ()  # the figures the value is made of (the table's other columns)


@dataclass
class Chart:
    key: str
    title: str
    unit: str
    rows: list[Row]
    count_headers: tuple[str, ...] = ()
    bars: list[dict[str, Any]] = field(default_factory=list)
    height: int = 0
    width: int = WIDTH
    left: int = LEFT

    def draw(self) -> Chart:
        """Lay out the bars: longest value fills the plot; a group with no value gets a label, no bar."""
        top = max((r.value for r in self.rows if r.value is not None), default=0.0) or 1.0
        if self.unit == "%":
            top = max(top, 100.0)
        plot = self.width - self.left - 70
        self.bars = [{"y": TOP + i * (BAR + GAP), "label": short(r.label), "full_label": r.label, "text": r.text,
                      "w": 0.0 if r.value is None else round(plot * r.value / top, 1)} for i, r in enumerate(self.rows)]
        self.height = TOP * 2 + len(self.rows) * (BAR + GAP)
        return self


def short(label: str, most: int = 24) -> str:
    """A group's name as the chart has room for it (the table beside it, and the label's title, say it whole)."""
    return label if len(label) <= most else label[:most - 1] + "…"


def _group(g: Mapping[str, Any]) -> str:
    return str(g.get("service") or g.get("agency_id") or "")


def _percent(rate: Any) -> tuple[float | None, str]:
    return (None, "–") if rate is None else (round(float(rate) * 100, 1), f"{float(rate) * 100:.1f}\u00a0%")


def _number(value: Any, unit: str) -> tuple[float | None, str]:
    return (None, "–") if value is None else (float(value), f"{float(value):g}\u00a0{unit}".strip())


def _rows(groups: list[Mapping[str, Any]], label: Callable[[Mapping[str, Any]], str],
          value: Callable[[Mapping[str, Any]], tuple[float | None, str]], counts: tuple[str, ...]) -> list[Row]:
    out = []
    for g in groups:
        v, text = value(g)
        out.append(Row(label(g), v, text, tuple((c, g.get(c)) for c in counts)))
    return out


def charts(result: Mapping[str, Any], words: Mapping[str, str]) -> list[Chart]:
    """The charts of a KPI answer; ``words`` holds the titles in the reader's language (keys as below)."""
    k = result["kpis"]
    pct = "%"
    out = [
        Chart("dna_rate", words["dna_rate"], pct, _rows(k["attendance"], _group, lambda g: _percent(g["dna_rate"]),
                                                       ("appointments", "dna")), ("appointments", "dna")),
        Chart("cna_rate", words["cna_rate"], pct, _rows(k["attendance"], _group, lambda g: _percent(g["cna_rate"]),
                                                       ("appointments", "cna")), ("appointments", "cna")),
        Chart("referral_to_first_contact", words["referral_to_first_contact"], words["days"],
              _rows(k["referral_to_first_contact"], _group, lambda g: _number(g["median_days"], words["days"]),
                    ("referrals", "contacted", "still_waiting")), ("referrals", "contacted", "still_waiting")),
        Chart("report_latency", words["report_latency"], words["hours"],
              _rows(k["report_latency"], _group,
                    lambda g: _number(g["issued_to_delivered_median_hours"], words["hours"]),
                    ("deliveries", "acknowledged")), ("deliveries", "acknowledged")),
        Chart("reports_ready", words["reports_ready"], pct,
              _rows(k["reports_ready_before_appointments"], _group, lambda g: _percent(g["share_all_ready"]),
                    ("with_reports", "all_ready")), ("with_reports", "all_ready")),
        Chart("copies_to_family", words["copies_to_family"], pct,
              _rows(k["copies_to_family"], _group, lambda g: _percent(g["share_copied"]),
                    ("reports", "copied_to_family")), ("reports", "copied_to_family")),
        Chart("statutory_deadlines", words["statutory_deadlines"], pct,
              _rows(k["statutory_deadlines"], lambda g: str(g.get("label") or f"{g['clock']} ({g['nation']})"),
                    lambda g: _percent(g["share_met"]), ("due", "met", "late", "stopped", "overdue")),
              ("due", "met", "late", "stopped", "overdue")),
        Chart("caseloads", words["caseloads"], words["families"],
              _rows(k["caseloads"]["coordinators"], lambda g: str(g["coordinator_id"]),
                    lambda g: _number(g["families"], ""), ())),
    ]
    return [c.draw() for c in out]
