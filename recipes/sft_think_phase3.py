"""Arm ``think_phase3``: the ``think_base`` recipe started from the phase3 (self-improving CPT) model.

The start checkpoint is ``outputs/phase3/final`` (written by ``recipes/phase3_online_dpo.py``); the
recipe stops with a clear error if it is missing. Everything else matches ``think_base``.

    accelerate launch recipes/sft_think_phase3.py [--config my.yaml] [--FLAG VALUE ...]
"""

from pathlib import Path

from sft_common import main

if __name__ == "__main__":
    main(default_config=str(Path(__file__).parent / "configs" / "sft_think_phase3.yaml"))
