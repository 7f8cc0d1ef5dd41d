"""Arm ``think_phase3_rlmt``: RLMT (METHOD.md §4) starting from the ``think_phase3`` SFT checkpoint.

Same recipe as ``rlmt_think_base.py`` (matched arms differ only in the start checkpoint and the
output folder, both set in ``configs/rlmt_think_phase3.yaml``):

    accelerate launch recipes/rlmt_think_phase3.py \
        [--config recipes/configs/rlmt_think_phase3.yaml] [--FLAG VALUE ...]
"""

from pathlib import Path

from rlmt_think_base import main

if __name__ == "__main__":
    main(default_config=Path(__file__).parent / "configs" / "rlmt_think_phase3.yaml")
