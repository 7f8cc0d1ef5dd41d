"""Judge statistics that survive resume and crashes: :class:`JudgeStatsCallback`.

Give the trainer one ``JudgeStatsCallback`` holding every judge of the run (pointwise reward functions,
a pairwise judge, or both). Then:

* every checkpoint carries the judges' counters: in ``trainer_state.json`` (the callback is a
  transformers ``ExportableState``) and as ``checkpoint-N/judge_stats.json``;
* ``<output_dir>/judge_stats.json`` is rewritten at every save and at the end of training, so a run
  that crashes still leaves the numbers of its last checkpoint;
* resuming from ``checkpoint-N`` sets the counters back to their values at step N, so steps after N
  that are trained again are counted once and the totals never undercount.

Restoring does not depend on ``TrainingArguments.restore_callback_states_from_checkpoint``: the callback
reads its own saved state in ``on_train_begin``. With that flag on, transformers 5.24 replaces the
callback by ``JudgeStatsCallback(**args)`` (``Trainer._load_callback_state``); the new instance finds
its judges through the live callback of the same ``name``, so both paths restore.

Multi-process runs: every rank has its own judge client and counters. The callback gathers all ranks'
counters at each step end (one small ``all_gather_object``), saves them per rank, and writes their sum;
resuming with the same number of processes gives each rank its own counters back, with a different
number rank 0 takes the sum.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from trl_ext.judges.base import JudgeStats

logger = logging.getLogger(__name__)

STATS_FILE = "judge_stats.json"
RankStates = list[dict[str, dict[str, Any]]]  # per rank: judge name → JudgeStats.state_dict()


def judges_with_stats(judges: Any) -> dict[str, Any]:
    """``name → judge`` for every object that keeps :class:`JudgeStats` in ``.stats``.

    A mapping is taken as given (each value must have stats); a sequence (e.g. TRL ``reward_funcs``)
    keeps only the objects with stats, named by ``__name__`` or class name (``#2``… for repeats).
    """
    if isinstance(judges, Mapping):
        named = dict(judges)
        lacking = [
            name for name, judge in named.items() if not isinstance(getattr(judge, "stats", None), JudgeStats)
        ]
        if lacking:
            raise TypeError(f"judges {lacking} have no JudgeStats in .stats")
        return named
    items = list(judges) if isinstance(judges, Sequence) else [judges]
    named: dict[str, Any] = {}
    for judge in items:
        if not isinstance(getattr(judge, "stats", None), JudgeStats):
            continue
        base = getattr(judge, "__name__", None) or type(judge).__name__
        name, k = base, 1
        while name in named:
            k += 1
            name = f"{base}#{k}"
        named[name] = judge
    return named


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(local: dict[str, dict[str, Any]]) -> RankStates:
    """Every rank's counters, in rank order (a collective: all ranks must call it together)."""
    import torch.distributed as dist

    rank, world = _rank_and_world()
    if world == 1:
        return [local]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, local)
    return gathered


def states_for_rank(saved: RankStates, rank: int, world: int) -> dict[str, dict[str, Any]]:
    """What this rank restores from per-rank saved counters: its own when the process count is unchanged;
    otherwise rank 0 takes the sum of all and the others start from zero, so the total is kept."""
    if len(saved) == world:
        return saved[rank]
    if rank != 0:
        return {name: JudgeStats().state_dict() for name in saved[0]} if saved else {}
    names = {name for states in saved for name in states}
    return {name: JudgeStats.sum_states([s[name] for s in saved if name in s]) for name in names}


def stats_report(saved: RankStates, global_step: int) -> dict[str, Any]:
    """The ``judge_stats.json`` body: per judge the summed ``JudgeStats.as_dict()``, plus per rank."""

    def as_dict(state: Mapping[str, Any]) -> dict[str, Any]:
        stats = JudgeStats()
        stats.load_state_dict(state)
        return stats.as_dict()

    names = sorted({name for states in saved for name in states})
    report: dict[str, Any] = {
        "global_step": global_step,
        "world_size": len(saved),
        "judges": {n: as_dict(JudgeStats.sum_states([s[n] for s in saved if n in s])) for n in names},
    }
    if len(saved) > 1:
        report["per_rank"] = [{n: as_dict(s) for n, s in states.items()} for states in saved]
    return report


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write via a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


class JudgeStatsCallback(TrainerCallback, ExportableState):
    """Saves judge counters with every checkpoint, writes ``judge_stats.json``, restores them on resume.

    Example::

        judge = LLMPairwiseJudge(base_url=urls, invalid_log_path=out / "judge_invalid.rank0.jsonl")
        trainer = SelfImprovingOnlineDPOTrainer(..., reward_funcs=judge,
                                                callbacks=[JudgeStatsCallback({"pairwise": judge})])

    Args:
        judges: ``{name: judge}``, or a sequence (TRL ``reward_funcs``: objects without
            :class:`~trl_ext.judges.base.JudgeStats` are skipped), or one judge. Use one callback per
            trainer for all its judges (transformers keys callback state by class name).
        name: links a callback that transformers rebuilt from its saved ``args`` to this one (see the
            module docstring); only needs changing when one process runs several trainers at once.
    """

    _live: ClassVar[weakref.WeakValueDictionary[str, JudgeStatsCallback]] = weakref.WeakValueDictionary()

    def __init__(self, judges: Any = None, *, name: str = "judge_stats"):
        self.name = name
        if judges is None:  # rebuilt by Trainer._load_callback_state: adopt the live callback's judges
            live = self._live.get(name)
            if live is None:
                raise ValueError(
                    "JudgeStatsCallback needs judges: a {name: judge} mapping or a list of judges"
                )
            judges = live.judges
        self.judges = judges_with_stats(judges)
        if not self.judges:
            raise ValueError("JudgeStatsCallback got no judge with JudgeStats (.stats); nothing to save")
        self._live[name] = self
        self._step = 0
        self._snapshot: RankStates | None = None  # all ranks' counters as of the last step end

    # ------------------------------------------------------------------ state
    def local_states(self) -> dict[str, dict[str, Any]]:
        return {name: judge.stats.state_dict() for name, judge in self.judges.items()}

    def snapshot(self, step: int) -> RankStates:
        """Gather all ranks' counters now (collective) and keep them for the next checkpoint."""
        self._step, self._snapshot = step, _gather(self.local_states())
        return self._snapshot

    def state(self) -> dict[str, Any]:
        """Saved into ``trainer_state.json`` by ``Trainer._save_checkpoint`` (rank 0 only, so it uses
        the counters gathered at the last step end rather than a collective)."""
        saved = self._snapshot if self._snapshot is not None else [self.local_states()]
        return {
            "args": {"name": self.name},
            "attributes": {"checkpoint_step": self._step, "checkpoint_ranks": saved},
        }

    def restore(self, saved: RankStates) -> None:
        """Set every judge's counters to the saved ones (see :func:`states_for_rank`)."""
        rank, world = _rank_and_world()
        mine = states_for_rank(saved, rank, world)
        for name, judge in self.judges.items():
            if name in mine:
                judge.stats.load_state_dict(mine[name])
            else:
                logger.warning("resumed checkpoint has no judge stats for %r: it counts from zero", name)
        self._snapshot = [dict(s) for s in saved] if len(saved) == world else None

    def write(self, directory: str | Path, global_step: int) -> Path:
        """Write ``<directory>/judge_stats.json`` from the last snapshot (call on the main process)."""
        saved = self._snapshot if self._snapshot is not None else [self.local_states()]
        path = Path(directory) / STATS_FILE
        write_json_atomic(path, stats_report(saved, global_step))
        return path

    # ------------------------------------------------------------------ trainer events
    def on_train_begin(self, args, state, control, **kwargs):
        key = type(self).__name__
        stored = state.stateful_callbacks.get(key)
        if isinstance(stored, list):
            raise ValueError(
                "found several JudgeStatsCallback states in trainer_state.json: give the trainer one "
                "JudgeStatsCallback with all its judges"
            )
        attributes = (stored or {}).get("attributes", {})
        # Only a state saved at the step we resume from is restored (a fresh run is at step 0).
        if state.global_step > 0 and attributes.get("checkpoint_step") == state.global_step:
            self.restore(attributes["checkpoint_ranks"])
        elif state.global_step > 0:
            logger.warning(
                "resumed at step %d without judge stats saved at that step: judge counters start from their "
                "current values", state.global_step
            )  # fmt: skip
        self._step = state.global_step
        if stored is None:  # transformers indexes stateful_callbacks[key] at every save
            state.stateful_callbacks[key] = self.state()

    def on_step_end(self, args, state, control, **kwargs):
        self.snapshot(state.global_step)

    def on_evaluate(self, args, state, control, **kwargs):
        self.snapshot(state.global_step)  # judge calls made by evaluation count before the save

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if checkpoint.is_dir():
            self.write(checkpoint, state.global_step)
        self.write(args.output_dir, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.snapshot(state.global_step)
        if state.is_world_process_zero:
            self.write(args.output_dir, state.global_step)


__all__ = ["STATS_FILE", "JudgeStatsCallback", "judges_with_stats", "states_for_rank", "stats_report"]
