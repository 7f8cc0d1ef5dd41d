"""Per-device batch and gradient accumulation from a fixed global batch and the world size.

A method fixes how much data one optimizer step sees (RLMT: 2 prefixes × 16 samples; phase3: 16
prefixes; SFT: 16 sequences). How that step is split over processes is a launch detail: the same
config must give the same step on 1, 2, 8 or 16 processes. :func:`plan_batch` does the split and,
where no split exists, raises :class:`BatchPlanError` naming the exact flags that would work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class BatchPlanError(ValueError):
    """The global batch cannot be split over this launch; the message names flags that would work."""


@dataclass(frozen=True)
class BatchPlan:
    """One optimizer step = ``world_size × per_device_train_batch_size × gradient_accumulation_steps``
    units (``unit``: samples, prefixes or sequences)."""

    unit: str
    units_per_step: int
    world_size: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    source: str  # "derived" (from the step size) or "explicit" (per-device batch and accumulation given)

    def as_dict(self) -> dict:
        return asdict(self)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _step_values_for(world: int, step_value: int, multiplier: int) -> list[int]:
    """The nearest step sizes below and above ``step_value`` whose units split over ``world``."""
    below = next((v for v in range(step_value - 1, 0, -1) if (v * multiplier) % world == 0), None)
    above = next(v for v in range(step_value + 1, step_value + world + 1) if (v * multiplier) % world == 0)
    return [v for v in (below, above) if v is not None]


def plan_batch(
    *,
    step_value: int,
    world_size: int,
    max_per_device: int,
    unit: str,
    step_flag: str,
    multiplier: int = 1,
    per_device: int | None = None,
    grad_accum: int | None = None,
    step_explicit: bool = False,
) -> BatchPlan:
    """Split ``step_value × multiplier`` units per optimizer step over ``world_size`` processes.

    ``step_flag`` is the flag that sets ``step_value`` (e.g. ``--prefixes_per_step``; RLMT counts
    samples, so its multiplier is ``num_generations``). ``per_device`` / ``grad_accum`` are the values
    the user gave explicitly (``None``: derive them). The derived per-device batch is the largest
    divisor of the per-process share that is at most ``max_per_device`` (a memory cap). When both
    ``per_device`` and ``grad_accum`` are given and ``step_explicit`` is False they define the step
    (``source="explicit"``): a user who spells out the split gets exactly that split.
    """
    if world_size < 1 or max_per_device < 1 or step_value < 1 or multiplier < 1:
        raise BatchPlanError(
            f"world_size, max_per_device, {step_flag} and its multiplier must be ≥ 1, got "
            f"{world_size}, {max_per_device}, {step_value}, {multiplier}"
        )
    if per_device is not None and grad_accum is not None and not step_explicit:
        return BatchPlan(
            unit, world_size * per_device * grad_accum, world_size, per_device, grad_accum, "explicit"
        )

    units = step_value * multiplier
    per_process, rest = divmod(units, world_size)
    if rest:
        counts = ", ".join(str(d) for d in _divisors(units) if d <= 64)
        options = " or ".join(
            f"{step_flag} {v}" for v in _step_values_for(world_size, step_value, multiplier)
        )
        raise BatchPlanError(
            f"{step_flag} {step_value} gives {units} {unit} per optimizer step, which does not split over "
            f"{world_size} processes. Launch with --num_processes in {{{counts}}} to keep this step, or "
            f"pass {options} (a different step than the arm's reference)."
        )
    if per_device is None and grad_accum is None:
        per_device = max(d for d in _divisors(per_process) if d <= max_per_device)
        return BatchPlan(unit, units, world_size, per_device, per_process // per_device, "derived")

    fits = [d for d in _divisors(per_process) if d <= max(max_per_device, per_device or 0)]
    if (
        per_device is not None
        and per_process % per_device == 0
        and grad_accum in (None, per_process // per_device)
    ):
        return BatchPlan(unit, units, world_size, per_device, per_process // per_device, "derived")
    if per_device is None and per_process % grad_accum == 0:
        return BatchPlan(unit, units, world_size, per_process // grad_accum, grad_accum, "derived")
    given = " ".join(
        f"--{name} {value}"
        for name, value in (
            ("per_device_train_batch_size", per_device),
            ("gradient_accumulation_steps", grad_accum),
        )
        if value is not None
    )
    ways = "; ".join(
        f"--per_device_train_batch_size {d} --gradient_accumulation_steps {per_process // d}"
        for d in sorted(fits, reverse=True)[:3]
    )
    raise BatchPlanError(
        f"{given} does not fit {step_flag} {step_value} ({units} {unit} per optimizer step = "
        f"{per_process} per process on {world_size} processes). Pass {ways}; or drop the flag(s) to "
        "derive them."
    )
