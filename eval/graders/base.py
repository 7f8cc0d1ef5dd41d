"""The verdict type every grader returns."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Grade:
    """The verdict for one completion. ``error`` is set for timeouts and grader failures;
    ``grader`` names the grader that produced it (``"default"`` or ``"seed_exact"``)."""

    correct: bool
    extracted: str | None
    error: str | None = None
    grader: str = "default"

    @property
    def timed_out(self) -> bool:
        return self.error is not None and self.error.startswith("timeout")

    def by(self, grader: str) -> Grade:
        return self if self.grader == grader else replace(self, grader=grader)
