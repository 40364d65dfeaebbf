"""Per-device ``seq`` bookkeeping (pure): the highest seq seen and the ranges still missing.

A device numbers its events 1, 2, 3, ... without a hole, across restarts. Batches arrive at
least once and mostly in order; a batch the broker refused arrives after its successors. So a
hole opened by a batch is *missing* until a later batch fills it: ``apply`` returns the ranges
that became missing and those that were filled, and the state keeps what is still missing
(bounded: past ``MAX_GAPS`` ranges the oldest are given up and counted in ``untracked``).
Applying the same seqs twice changes nothing, so a retried invocation is harmless.
"""

from __future__ import annotations

__all__ = ["MAX_GAPS", "SeqState", "apply", "ranges"]

from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_GAPS = 200

Range = tuple[int, int]  # inclusive


@dataclass(frozen=True)
class SeqState:
    """``high``: highest seq seen (0: none); ``gaps``: missing ranges below it, ascending;
    ``untracked``: missing seqs no longer tracked (given up beyond ``MAX_GAPS`` ranges)."""

    high: int = 0
    gaps: tuple[Range, ...] = ()
    untracked: int = 0

    @property
    def missing(self) -> int:
        """Seqs below ``high`` not received (tracked ones plus untracked)."""
        return sum(b - a + 1 for a, b in self.gaps) + self.untracked


@dataclass(frozen=True)
class Change:
    """What one batch did: the ranges it opened (now missing) and filled (arrived late)."""

    state: SeqState
    opened: list[Range] = field(default_factory=list)
    filled: list[Range] = field(default_factory=list)


def ranges(seqs: Iterable[int]) -> list[Range]:
    """``seqs`` as ascending inclusive ranges: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    out: list[Range] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def _subtract(gap: Range, received: list[Range]) -> tuple[list[Range], list[Range]]:
    """(what remains of ``gap``, what of it was received)."""
    remain, got = [gap], []
    for a, b in received:
        nxt: list[Range] = []
        for lo, hi in remain:
            if b < lo or a > hi:
                nxt.append((lo, hi))
                continue
            got.append((max(lo, a), min(hi, b)))
            if lo < a:
                nxt.append((lo, a - 1))
            if b < hi:
                nxt.append((b + 1, hi))
        remain = nxt
    return remain, got


def apply(state: SeqState, seqs: Iterable[int]) -> Change:
    """The state after receiving ``seqs``; which ranges that opened and filled."""
    received = ranges(seqs)
    if not received:
        return Change(state)
    gaps: list[Range] = []
    filled: list[Range] = []
    for gap in state.gaps:
        remain, got = _subtract(gap, received)
        gaps.extend(remain)
        filled.extend(got)
    opened: list[Range] = []
    high = state.high
    for a, b in received:
        if b <= high:
            continue
        start = max(a, high + 1)
        if start > high + 1:
            opened.append((high + 1, start - 1))
        high = b
    gaps.extend(opened)
    gaps.sort()
    untracked = state.untracked
    if len(gaps) > MAX_GAPS:
        dropped, gaps = gaps[: len(gaps) - MAX_GAPS], gaps[len(gaps) - MAX_GAPS :]
        untracked += sum(b - a + 1 for a, b in dropped)
    return Change(SeqState(high, tuple(gaps), untracked), opened, filled)
