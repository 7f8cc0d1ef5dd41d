"""``python -m trl_ext.assets``: fetch, verify or locate the embedded default."""

from trl_ext.assets import main

main()
