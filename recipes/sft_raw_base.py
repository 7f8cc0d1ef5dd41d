"""Arm ``raw_base``: the control — same rows, no thoughts, matched token budget.

Trains on ``raw_chunk_ids``. Its ``max_steps`` is not configured but derived from the rows: the
think arms' expected tokens (``budget_reference_steps`` × sequences/step × mean augmented length)
divided by sequences/step × mean raw length, rounded up (reference: 657 vs 512 steps). The
derivation is printed, logged and written to ``metrics.json`` under ``token_budget``.

    accelerate launch recipes/sft_raw_base.py [--config my.yaml] [--FLAG VALUE ...]
"""

from pathlib import Path

from sft_common import main

if __name__ == "__main__":
    main(default_config=str(Path(__file__).parent / "configs" / "sft_raw_base.yaml"))
