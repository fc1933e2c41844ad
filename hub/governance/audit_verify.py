"""Verification of the audit chain: rebuild it from the rows and name every problem.

:func:`verify_rows` is the algorithm behind :meth:`hub.governance.audit.AuditLog.verify`; the kinds of
problem it names (ALTERED, DELETED, REORDERED, INSERTED) are described in :mod:`hub.governance.audit`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hub.db.store import as_utc
from hub.governance.audit_records import (
    GENESIS,
    KINDS,
    Anchor,
    AuditProblem,
    Kind,
    VerifyReport,
    compute_hash,
    iso_utc,
)

_HASHED = ("recorded_at", "actor", "actor_role", "action", "subject_household", "subject_child", "data_ref",
           "purpose", "legal_basis", "detail", "source")


def _fields(row: Any) -> dict[str, Any]:
    return {k: getattr(row, k) for k in _HASHED}


def verify_rows(rows: Sequence[Any], anchors: Sequence[Anchor] = ()) -> VerifyReport:
    """The verification algorithm over rows (attribute access, any order); see the module docstring."""
    rows = sorted(rows, key=lambda r: int(r.seq))
    problems: dict[tuple[int, str], AuditProblem] = {}

    def add(seq: int, kind: Kind, message: str) -> None:
        problems.setdefault((seq, kind), AuditProblem(seq, kind, message))

    n = len(rows)
    seqs = [int(r.seq) for r in rows]
    true_hash = [compute_hash(_fields(r), r.prev_hash) for r in rows]
    content_ok = [true_hash[i] == rows[i].hash for i in range(n)]
    index_of_seq = {s: i for i, s in enumerate(seqs)}

    # 1. gaps in seq
    expected = 1
    gap_before: set[int] = set()
    for i, s in enumerate(seqs):
        if s > expected:
            gap_before.add(i)
            for missing in range(expected, s):
                add(missing, "DELETED", f"record missing (seq {expected}–{s - 1} absent)")
        expected = s + 1
    max_seq = seqs[-1] if seqs else 0

    # 2. links: a row can be followed via its stored hash or, if that column was edited, its content hash
    succ: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        succ[r.prev_hash].append(i)
    known_hashes = {r.hash for r in rows} | set(true_hash)

    def successors(i: int) -> list[int]:
        out = list(succ.get(rows[i].hash, ()))
        if true_hash[i] != rows[i].hash:
            out += [j for j in succ.get(true_hash[i], ()) if j not in out]
        return [j for j in out if j != i]

    # 3. content that only hashes with another row's links: a swap of the data columns (REORDERED); content
    #    that hashes with an earlier row's hash as prev_hash: its link was re-pointed at rows spliced in.
    explained: set[int] = set()
    bad = [i for i in range(n) if not content_ok[i]]
    for i in bad:
        for j in bad:
            if j != i and compute_hash(_fields(rows[i]), rows[j].prev_hash) == rows[j].hash:
                add(seqs[i], "REORDERED", f"its content belongs at seq {seqs[j]} (contents of two seqs swapped)")
                explained.add(i)
                break
    spliced: set[int] = set()
    for i in bad:
        if i in explained:
            continue
        for back in range(2, 7):
            k = i - back
            if k < -1:
                break
            cand = GENESIS if k < 0 else rows[k].hash
            if compute_hash(_fields(rows[i]), cand) == rows[i].hash:
                for m in range(max(k, -1) + 1, i):
                    spliced.add(m)
                    add(seqs[m], "INSERTED", f"spliced in before seq {seqs[i]}, whose link was re-pointed to it")
                explained.add(i)
                break

    # 4. rebuild the chain: from the genesis record, then from each orphan (a record linking to nothing)
    depth = _chain_depths(n, successors)
    visited: set[int] = set()
    order: list[int] = []
    verdict: dict[int, str] = {}

    def walk(start: int) -> None:
        cur = start
        while cur not in visited:
            visited.add(cur)
            order.append(cur)
            cands = [j for j in successors(cur) if j not in visited]
            if not cands:
                return
            here = seqs[cur]
            cands.sort(key=lambda j: (-depth[j], seqs[j] != here + 1, seqs[j]))
            for other in cands[1:]:
                verdict.setdefault(other, f"links to seq {here}, which already has a successor (seq {seqs[cands[0]]})")
            cur = cands[0]

    genesis_roots = [i for i in range(n) if rows[i].prev_hash == GENESIS]
    if genesis_roots:
        walk(genesis_roots[0])
    for i in genesis_roots[1:]:
        verdict.setdefault(i, "a second record claims to start the chain")
    for i in range(n):
        if i in visited or rows[i].prev_hash == GENESIS or rows[i].prev_hash in known_hashes:
            continue
        if i in gap_before:  # explained by the reported gap
            walk(i)
        elif content_ok[i]:
            prev_seq = seqs[i - 1] if i > 0 else 0
            add(seqs[i], "DELETED", f"the record before it in the chain is missing (its prev_hash matches no "
                                    f"record): removed and later seqs renumbered, or seq {prev_seq} re-hashed")
            walk(i)
        else:
            verdict.setdefault(i, "forged: its hash matches its content and its prev_hash matches no record")
            explained.add(i)
    for i in range(n):
        if i not in visited and i not in spliced:
            add(seqs[i], "INSERTED", verdict.get(i, "not reachable along the chain (forged branch)"))

    # 5. content edits
    for i in bad:
        if i not in explained and i in visited:
            add(seqs[i], "ALTERED", "content does not match its hash (a column was edited)")

    # 6. seq order vs chain order (whole-row swaps)
    chain_seqs = [seqs[i] for i in order if i not in spliced]
    for got, want in zip(chain_seqs, sorted(chain_seqs), strict=True):
        if got != want:
            add(got, "REORDERED", f"the chain places it where seq {want} should be (rows swapped)")

    # 7. recorded_at vs seq among sound records (a swap with the chain re-hashed after it)
    flagged = {s for s, _ in problems}
    sound = [i for i in order if content_ok[i] and seqs[i] not in flagged]
    by_seq = sorted(sound, key=lambda i: seqs[i])
    by_time = sorted(sound, key=lambda i: (as_utc(rows[i].recorded_at), seqs[i]))
    for a, b in zip(by_seq, by_time, strict=True):
        if a != b:
            add(seqs[a], "REORDERED", "its recorded_at contradicts its seq (recorded_at goes backwards)")

    # 8. anchors: truncated tail, or a chain rewritten from some point on
    for anc in anchors:
        at = index_of_seq.get(anc.seq)
        if at is None:
            if anc.seq > max_seq:
                for missing in range(max_seq + 1, anc.seq + 1):
                    add(missing, "DELETED", f"anchored at {iso_utc(anc.anchored_at)} but missing (log truncated "
                                            f"after seq {max_seq})")
            else:
                add(anc.seq, "DELETED", f"anchored at {iso_utc(anc.anchored_at)} but missing")
        elif rows[at].hash != anc.hash:
            add(anc.seq, "ALTERED", f"its hash differs from the anchor taken at {iso_utc(anc.anchored_at)} "
                                    "(the chain was rewritten)")

    ordered = sorted(problems.values(), key=lambda p: (p.seq, KINDS.index(p.kind)))
    return VerifyReport(records=n, problems=ordered, anchors_checked=len(anchors),
                        last_seq=max_seq, last_hash=rows[-1].hash if rows else GENESIS)


def _chain_depths(n: int, successors: Callable[[int], list[int]]) -> list[int]:
    """Length of the longest chain continuing from each row (iterative; cycles are cut)."""
    depth = [0] * n
    state = [0] * n  # 0 new, 1 on stack, 2 done
    for start in range(n - 1, -1, -1):
        if state[start]:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(start, iter(successors(start)))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            advanced = False
            for nxt in it:
                if state[nxt] == 0:
                    state[nxt] = 1
                    stack.append((nxt, iter(successors(nxt))))
                    advanced = True
                    break
            if not advanced:
                stack.pop()
                state[node] = 2
                depth[node] = 1 + max((depth[j] for j in successors(node) if state[j] == 2), default=0)
    return depth
