"""The top entries of a profile: where a bench spends its time, per function.

Two sources, one table (share of the samples or of the time, by function):

* a ``py-spy record --format raw`` file (collapsed stacks, ``frame;frame;... count``), e.g. of a
  worker process the pipeline bench started (``bench_timeline.py --pipeline --py-spy PATH``);
* a pyinstrument session, in process (``bench_ingest.py --profile LABEL``).

"self" is time in the function itself, "total" time with everything it called (a recursive
function counts once per sample). Run on a py-spy file:

    /work/venv/bin/python bench/profile_top.py PATH [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: py-spy frames read ``function (path/to/module.py:123)``; the line is dropped so a function is one entry
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/wt-", "/work/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/wt-":
                path = path.split("/", 1)[-1]
    return path


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m['func']} ({_short(m['file'])})"


def from_collapsed(lines: Iterable[str]) -> tuple[Counter[str], Counter[str], int]:
    """(self samples, total samples, all samples) per function from collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    n = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line or " " not in line:
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        n += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    return own, total, n


def from_pyinstrument(session: Any) -> tuple[Counter[str], Counter[str], float]:
    """(self seconds, total seconds, all seconds) per function from a pyinstrument session."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    root = session.root_frame()
    if root is None:
        return own, total, 0.0

    def walk(frame: Any, above: frozenset[str], parent: str) -> None:
        if getattr(frame, "is_synthetic", False):  # pyinstrument's "[self]" / "[await]" leaves: the parent's own time
            own[parent] += frame.time
            return
        name = f"{frame.function} ({_short(frame.file_path or '')})"
        if not frame.children:
            own[name] += frame.time
        if name not in above:
            total[name] += frame.time
        for child in frame.children:
            walk(child, above | {name}, name)

    walk(root, frozenset(), "(root)")
    return own, total, float(root.time)


def table(own: Counter[str], total: Counter[str], whole: float, top: int = 25) -> str:
    """The ``top`` functions by self time, then by total time, as shares of ``whole``."""
    if not whole:
        return "(no samples)"
    of = f"{whole:,} samples" if isinstance(whole, int) else f"{whole:.2f} s"
    out = [f"top {top} by self time (share of {of})"]
    out += [f"  {v / whole:6.1%}  {k}" for k, v in own.most_common(top)]
    out.append(f"top {top} by total time (the function and what it calls)")
    out += [f"  {v / whole:6.1%}  {k}" for k, v in total.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a py-spy --format raw file")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    own, total, n = from_collapsed(args.path.read_text().splitlines())
    print(table(own, total, n, args.top))


if __name__ == "__main__":
    main()
