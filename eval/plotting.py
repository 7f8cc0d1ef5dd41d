"""Small helpers that make every eval plot say what it shows: value labels on bars, bars of height
zero that stay visible, integer axes for counts, and a loud note when a model has random weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

RANDOM_NOTE = "RANDOM-WEIGHT MODEL ({names}): a pipeline check, the numbers are noise"
ZERO_FLOOR = -0.03  # y-axis starts a little below 0 so a bar of height 0 shows as its edge line


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def is_random_weight(model_dir: str | Path | None) -> bool | None:
    """True when ``model_dir`` says its weights are random (the embedded tiny model's marker, or a
    checkpoint trained from it); None when unknown."""
    if model_dir is None:
        return None
    try:
        from trl_ext.assets import model_asset_info
    except ImportError:
        return None
    info = model_asset_info(model_dir)
    return bool(info.get("random_weights")) if info is not None else False


def random_note(flags: Mapping[str, bool | None]) -> str | None:
    """The warning line for the models flagged random, or None."""
    names = [name for name, flag in flags.items() if flag]
    return RANDOM_NOTE.format(names=", ".join(names)) if names else None


def add_random_note(fig, note: str | None) -> None:
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="#b00020", weight="bold")


def label_bars(ax, bars, values: Sequence[float], fmt: str = "{:.3f}") -> None:
    """Write each bar's value above it (also for height-0 bars, which otherwise look missing)."""
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=7)


def visible_bars(ax, x, heights, width, **kwargs):
    """``ax.bar`` with an edge; a bar of height 0 is also drawn as a thick line in its colour on the
    axis (its label says 0.000), so an arm that scored nothing is not mistaken for a missing arm."""
    color = kwargs.pop("color", None)
    bars = ax.bar(x, heights, width, color=color, edgecolor="black", linewidth=0.8, **kwargs)
    for xi, h in zip(x, heights):
        if h == 0:
            ax.hlines(0, xi - width / 2, xi + width / 2, colors=color, linewidth=5, zorder=3)
    return bars


def wrap(text: str, width: int = 95) -> str:
    """Title lines that fit the figure instead of running off its edge."""
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def integer_axis(axis) -> None:
    """Counts are integers: no 0.5-problem ticks."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))
