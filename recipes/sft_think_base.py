"""Arm ``think_base``: full-sequence next-token SFT of the base model on teacher-augmented text.

Input ids = labels = ``interleaved_thinking_ids`` (thoughts and their tags included, no EOS), one
epoch over the SFT partition by default (reference: 512 steps × 16 sequences).

    accelerate launch recipes/sft_think_base.py [--config my.yaml] [--FLAG VALUE ...]
"""

from pathlib import Path

from sft_common import main

if __name__ == "__main__":
    main(default_config=str(Path(__file__).parent / "configs" / "sft_think_base.yaml"))
