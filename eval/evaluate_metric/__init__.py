"""The Mean@k/Pass@k ``evaluate`` module; ``evaluate.load(METRIC_PATH)`` works from an installed
package as well as from a checkout (``evaluate.load("eval/evaluate_metric")``)."""

from pathlib import Path

METRIC_PATH = str(Path(__file__).resolve().parent)
