"""Evaluation package: serving, reasoning suite, graders, reward gate, thought-use probe."""
