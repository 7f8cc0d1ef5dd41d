"""Judge prompt templates (package data, our own wording).

Loaded by ``trl_ext.judges.base.load_prompt_template``.
"""
