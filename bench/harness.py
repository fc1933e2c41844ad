"""Small shared helpers for the benches in this folder: time things, summarise them, print and save.

Typical use::

    report = Report("raw floor", argv=sys.argv)
    m = time_items(encode, records, warmup=1000)             # or time_for(fn, seconds=2)
    report.add("avro encode", m.rate, "rec/s", note=f"{m.count:,} in {m.seconds:.2f} s")
    report.add("serde encode", m2.rate, "rec/s", base="avro encode")   # adds "x of avro encode"
    report.print()
    report.write_json(args.json)                             # no-op when args.json is None

Figures are higher-is-better rates unless their unit says otherwise; a ``base`` figure turns into a
ratio column ("0.82x of avro encode"). Output is plain text with fixed columns so runs can be
diffed, and the machine (CPU count, Python, platform) is always printed and saved with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # the repository checkout, before site-packages


# ----------------------------------------------------------------------------------------- machine

def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------------------- timing

@dataclass(frozen=True)
class Measurement:
    """``count`` items in ``seconds`` of wall-clock time; ``samples`` are optional latencies (s)."""

    count: int
    seconds: float
    samples: tuple[float, ...] = ()

    @property
    def rate(self) -> float:
        return rate(self.count, self.seconds)

    def pct(self, p: float) -> float:
        return percentile(self.samples, p)


def rate(count: int, seconds: float) -> float:
    """Items per second (0 when nothing was timed)."""
    return count / seconds if seconds > 0 else 0.0


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks; NaN if empty."""
    if not samples:
        return float("nan")
    s = sorted(samples)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def percentiles(samples: Sequence[float], ps: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": .., "p95": .., "p99": ..}`` of the samples (same unit as the samples)."""
    return {f"p{p:g}": percentile(samples, p) for p in ps}


def time_items(fn: Callable[[Any], object], items: Sequence[Any], *, warmup: int = 0,
               repeat: int = 1) -> Measurement:
    """Call ``fn(item)`` for every item (``repeat`` passes) after ``warmup`` untimed calls."""
    for item in items[:warmup]:
        fn(item)
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return Measurement(len(items) * repeat, time.perf_counter() - start)


def time_for(fn: Callable[[Any], object], items: Sequence[Any], seconds: float, *,
             warmup_seconds: float = 0.2) -> Measurement:
    """Cycle ``fn(item)`` over the items for at least ``seconds`` (checks the clock once per pass)."""
    def run(limit: float) -> tuple[int, float]:
        count, start = 0, time.perf_counter()
        while True:
            for item in items:
                fn(item)
            count += len(items)
            elapsed = time.perf_counter() - start
            if elapsed >= limit:
                return count, elapsed
    if warmup_seconds > 0:
        run(warmup_seconds)
    return Measurement(*run(seconds))


async def time_async(fn: Callable[[Any], Awaitable[object]], items: Sequence[Any], *, warmup: int = 0,
                     latencies: bool = False) -> Measurement:
    """Await ``fn(item)`` for every item in turn; with ``latencies`` keep each call's duration."""
    for item in items[:warmup]:
        await fn(item)
    samples: list[float] = []
    clock = time.perf_counter
    start = clock()
    for item in items:
        t = clock()
        await fn(item)
        if latencies:
            samples.append(clock() - t)
    return Measurement(len(items), clock() - start, tuple(samples))


async def paced(total: int, rate: float, send: Callable[[int, int], Coroutine[Any, Any, None]], *, tick: float,
                in_flight_max: int = 16) -> int:
    """Offer ``total`` items at ``rate`` a second: every ``tick`` seconds, ``send(first, end)`` the items due
    since the last call (at most ``in_flight_max`` sends at once; a late send makes the next one larger).
    Returns how many were offered, once every send has finished."""
    in_flight: set[asyncio.Task[None]] = set()
    sent = k = 0
    start = time.perf_counter()
    while sent < total:
        k += 1
        due = min(total, int(rate * (time.perf_counter() - start)) + 1)
        if due > sent and len(in_flight) < in_flight_max:
            task = asyncio.create_task(send(sent, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent = due
        await asyncio.sleep(max(0.0, start + k * tick - time.perf_counter()))
    if in_flight:
        await asyncio.gather(*in_flight)
    return sent


def run_async(coro: Awaitable[Any]) -> Any:
    """``asyncio.run`` for a bench's main coroutine (Ctrl-C cancels it, so its finally blocks run)."""
    return asyncio.run(coro)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- report

@dataclass
class Figure:
    name: str
    value: float
    unit: str  # "msg/s", "rec/s", "ms", "MB/s", "B" …
    note: str = ""
    base: str | None = None  # name of another figure: prints value/base as "x of <base>"
    extra: dict[str, Any] = field(default_factory=dict)  # saved in the JSON only


@dataclass
class Report:
    title: str
    argv: Sequence[str] = ()
    figures: list[Figure] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def add(self, name: str, value: float, unit: str, *, note: str = "", base: str | None = None,
            extra: dict[str, Any] | None = None) -> Figure:
        """Append a figure; ``base`` names an earlier figure to print the ratio against."""
        fig = Figure(name, float(value), unit, note, base, dict(extra or {}))
        self.figures.append(fig)
        return fig

    def get(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    def ratio(self, fig: Figure) -> float | None:
        base = self.get(fig.base) if fig.base else None
        if base is None or base.value == 0:
            return None
        return fig.value / base.value

    def machine_line(self) -> str:
        m = self.machine
        return (f"machine: {m['cpu_count']} CPUs ({m['cpus_usable']} usable), {m['cpu_model']}; "
                f"{m['implementation']} {m['python']}; {m['platform']}")

    def lines(self) -> list[str]:
        """The table: one figure per line, fixed columns sized to this report's contents."""
        ratios = []
        for f in self.figures:
            r = self.ratio(f)
            ratios.append(f"{r:.2f}x of {f.base}" if r is not None else "")
        name_w = max([len(f.name) for f in self.figures] + [6])
        ratio_w = max([len(r) for r in ratios] + [5])
        out = [f"== {self.title} ==", self.machine_line(), f"started: {self.started}"]
        if self.argv:
            out.append("command: " + " ".join(self.argv))
        out.append("")
        out.append(f"{'figure':<{name_w}}  {'value':>12}  {'unit':<5}  {'ratio':<{ratio_w}}  note")
        out.append(f"{'-' * name_w}  {'-' * 12}  {'-' * 5}  {'-' * ratio_w}  {'-' * 4}")
        for f, ratio in zip(self.figures, ratios, strict=True):
            row = f"{f.name:<{name_w}}  {fmt(f.value):>12}  {f.unit:<5}  {ratio:<{ratio_w}}  {f.note}"
            out.append(row.rstrip())
        return out

    def print(self) -> None:
        print("\n".join(self.lines()), flush=True)

    def as_dict(self) -> dict[str, Any]:
        figs = []
        for f in self.figures:
            d = asdict(f)
            d["ratio"] = self.ratio(f)
            figs.append(d)
        return {"title": self.title, "started": self.started, "argv": list(self.argv),
                "machine": self.machine, "figures": figs}

    def write_json(self, path: str | Path | None) -> None:
        if path:
            Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n")
            print(f"wrote {path}")


def fmt(value: float) -> str:
    """Stable number format: thousands separators, 2 decimals below 100, 1 below 10,000, else none."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) < 100:
        return f"{value:,.2f}"
    if abs(value) < 10_000:
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options every bench takes: ``--json PATH``."""
    parser.add_argument("--json", metavar="PATH", help="also write the figures and the machine as JSON")
    return parser


def fresh_pg_database(pg_url: str) -> tuple[str, Callable[[], None]]:
    """A new PostgreSQL database ``bench_<random>`` on the server of ``pg_url``: (its URL, a callable dropping
    it)."""
    import uuid

    import sqlalchemy as sa

    base = pg_url.rsplit("/", 1)[0]
    admin = sa.create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    db = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {db}"))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()

    return f"{base}/{db}", drop
