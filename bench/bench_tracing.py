"""What tracing costs on the hot paths: the header builder with and without an active span, and the
worker's spans for a batch of 1,000 records (one span per distinct trace, not per record).

    .venv/bin/python bench/bench_tracing.py [--rounds N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from hub.core.tracing import configure_tracing, continued, current_headers, tracer
from hub.wire.envelope import HeaderBuilder

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def per_call(fn: Callable[[], object], rounds: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) / rounds * 1e6


def build(builder: HeaderBuilder) -> None:
    builder.build("6f1c1b8e-8a51-4bb7-9d6e-2f43c3b1f0a1", 1, "7A6/abuhb-pas", "health.report", NOW, "subj", None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    configure_tracing("familyhub-bench")  # the SDK provider every process installs; no exporter
    plain = HeaderBuilder(NOW)
    print(f"header build, no span          {per_call(lambda: build(plain), rounds * 10):8.2f} us/record")
    with tracer().start_as_current_span("request"):
        traced = HeaderBuilder(NOW)
        one_trace = [current_headers()] * 1000
    print(f"header build, in a span        {per_call(lambda: build(traced), rounds * 10):8.2f} us/record")
    ten = []
    for _ in range(10):
        with tracer().start_as_current_span("request"):
            ten += [current_headers()] * 100

    def spans(carriers: list[list[tuple[str, bytes]]]) -> None:
        with continued("project", carriers):
            pass

    for label, carriers in (("no trace headers", [[] for _ in range(1000)]), ("1 trace", one_trace),
                            ("10 traces", ten)):
        us = per_call(lambda c=carriers: spans(c), rounds // 10)  # type: ignore[misc]
        print(f"worker spans, 1,000 records, {label:<17}{us:8.1f} us/batch  ({us / 1000:.3f} us/record)")


if __name__ == "__main__":
    main()
