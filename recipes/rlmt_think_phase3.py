"""Arm ``think_phase3_rlmt``: RLMT (docs/method.md §4) starting from the ``think_phase3`` SFT checkpoint.

Same recipe as ``rlmt_think_base.py``; matched arms differ only in the start checkpoint and the output
folder, both set in ``configs/rlmt_think_phase3.yaml`` (always the base config of this arm):

    accelerate launch recipes/rlmt_think_phase3.py [--config my.yaml] [--FLAG VALUE ...]
"""

from pathlib import Path

from rlmt_think_base import main

if __name__ == "__main__":
    main(default_config=Path(__file__).parent / "configs" / "rlmt_think_phase3.yaml")
