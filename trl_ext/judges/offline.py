"""An offline pointwise judge for CPU runs, the demo and tests: no server, fully deterministic.

:class:`ReferenceOverlapJudge` measures **lexical overlap with the reference continuation**: the
F1 between the sets of lower-cased words (a letter followed by at least two word characters) of
the candidate and of the reference. With ``threshold`` set it returns 1 when F1 ≥ threshold,
else 0 — the same 0/1 shape as the LLM judge, so every downstream metric behaves the same.

It is *not* equivalent to the LLM judge: it rewards reusing the reference's vocabulary, cannot
tell coherent text from a word salad of the right words, and ignores the prefix except through
the reference. Use it to exercise the pipeline; report LLM-judge numbers as results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from trl_ext.judges.base import JudgeVerdict, PointwiseRewardFunc

_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9'’-]{2,}")


def word_set(text: str) -> set[str]:
    return {w.lower() for w in _WORD_RE.findall(text)}


def overlap_f1(candidate: str, reference: str) -> float:
    """F1 of the candidate's and the reference's word sets (0.0 when either has no words)."""
    cand, ref = word_set(candidate), word_set(reference)
    common = len(cand & ref)
    if not cand or not ref or not common:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


class ReferenceOverlapJudge(PointwiseRewardFunc):
    """Deterministic 0/1 (or graded) reward from word overlap with the reference continuation.

    Args:
        threshold: F1 needed for a score of 1; ``None`` returns the F1 itself (graded reward).
    """

    __name__ = "reference_overlap"

    def __init__(self, threshold: float | None = 0.1):
        super().__init__()
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] or None, got {threshold}")
        self.threshold = threshold

    def score(self, candidate: str, reference: str) -> float:
        f1 = overlap_f1(candidate, reference)
        return f1 if self.threshold is None else float(f1 >= self.threshold)

    def judge(
        self, prefixes: Sequence[str], candidates: Sequence[str], references: Sequence[str]
    ) -> list[JudgeVerdict]:
        if not len(prefixes) == len(candidates) == len(references):
            raise ValueError(
                f"judge got {len(prefixes)} prefixes, {len(candidates)} candidates, "
                f"{len(references)} references"
            )
        verdicts = [JudgeVerdict(score=self.score(c, r)) for c, r in zip(candidates, references)]
        for verdict in verdicts:
            self.stats.record(verdict)
        return verdicts
