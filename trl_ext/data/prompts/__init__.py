"""Teacher prompt templates (package data), loaded with :func:`trl_ext.data.augment.load_prompt`."""
