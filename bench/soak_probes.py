"""What the soak bench reads every interval, and how it judges a series: flat or growing.

* RSS of a process and of the hub's children by role (``/proc``: the ``hub up`` process serves the API,
  its children are the stream workers, the deliverer and the embedded broker).
* The hub-wide gauges of ``GET /metrics`` (Prometheus text; the sampler's lease holder exports them).
* A least-squares slope per minute over the samples, and the verdict per series.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import children_of


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def role_of(pid: int) -> str:
    """worker, deliverer, broker or other, from the child's command line."""
    args = cmdline(pid)
    if "hub.cli" in args:
        i = args.index("hub.cli")
        if i + 1 < len(args) and args[i + 1] in ("worker", "deliver"):
            return "worker" if args[i + 1] == "worker" else "deliverer"
    if (len(args) > 1 and args[1] == "broker") or (args and "tansu" in os.path.basename(args[0])):
        return "broker"
    return "other"


def rss_by_role(hub_pid: int) -> dict[str, float]:
    """MiB: ``api`` (the ``hub up`` process), ``worker`` (sum over workers), ``deliverer``, ``broker``."""
    out = {"api": rss_mb(hub_pid), "worker": 0.0, "deliverer": 0.0, "broker": 0.0}
    for child in children_of(hub_pid):
        role = role_of(child)
        if role != "other":
            out[role] += rss_mb(child)
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Gauge name -> value, summing the label sets of one name (``hub_consumer_lag`` over topics)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def load_average() -> float:
    return os.getloadavg()[0]


def slope_per_min(ts: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``ts`` (seconds), per minute; 0 with fewer than two points."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    if n < 3:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sx = sum((x - mx) ** 2 for x in xs) ** 0.5
    sy = sum((y - my) ** 2 for y in ys) ** 0.5
    if sx == 0 or sy == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (sx * sy)


@dataclass
class Verdict:
    series: str
    unit: str
    first: float
    last: float
    slope: float  # per minute
    allowed: float  # the growth over the run that still counts as flat
    minutes: float

    @property
    def growth(self) -> float:
        return self.slope * self.minutes

    @property
    def word(self) -> str:
        return "growing" if self.growth > self.allowed else "flat"

    def line(self) -> str:
        return (f"{self.series:<28} {self.word:<8} slope {self.slope:+10.2f} {self.unit}/min "
                f"(fitted {self.growth:+.1f} {self.unit} over {self.minutes:.1f} min; flat if <= {self.allowed:.1f}); "
                f"first {self.first:.1f}, last {self.last:.1f}")


def judge(series: str, unit: str, ts: Sequence[float], ys: Sequence[float], allowed: float) -> Verdict:
    """Flat when the fitted growth over the samples is no more than ``allowed`` (in the series' unit)."""
    minutes = (ts[-1] - ts[0]) / 60 if len(ts) > 1 else 0.0
    return Verdict(series, unit, ys[0] if ys else 0.0, ys[-1] if ys else 0.0, slope_per_min(ts, ys), allowed,
                   minutes)
