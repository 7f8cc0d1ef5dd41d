"""Judge counters survive resume and crashes: JudgeStats state, JudgeStatsCallback on a real HF Trainer."""

from __future__ import annotations

import json

import pytest
from fault_server import Fault

from trl_ext.judges import JudgeStats, JudgeVerdict, LLMJudge
from trl_ext.judges.pairwise import LLMPairwiseJudge
from trl_ext.judges.stats import JudgeStatsCallback, judges_with_stats, states_for_rank, stats_report

POINTWISE_PER_STEP, PAIRWISE_PER_STEP = 3, 2


def test_state_dict_round_trip_and_sums():
    stats = JudgeStats()
    stats.record(JudgeVerdict(score=1.0, latency_s=0.5))
    stats.record(JudgeVerdict.invalid("truncated: cut", raw="x", latency_s=0.25))
    state = json.loads(json.dumps(stats.state_dict()))  # JSON-safe
    restored = JudgeStats()
    restored.load_state_dict(state)
    assert restored.as_dict() == stats.as_dict() and restored.reasons == {"truncated": 1}
    assert JudgeStats.sum_states([state, state])["reasons"] == {"truncated": 2}
    with pytest.raises(KeyError, match="lacks \\['reasons'\\]"):
        restored.load_state_dict({k: v for k, v in state.items() if k != "reasons"})


def test_per_rank_states_keep_the_total_when_the_process_count_changes():
    one = {"calls": 4, "valid": 3, "invalid": 1, "reasons": {"truncated": 1}, "latency_s_total": 1.0}
    two = {"calls": 6, "valid": 4, "invalid": 2, "reasons": {"call_failed": 2}, "latency_s_total": 2.0}
    saved = [{"judge": one}, {"judge": two}]
    assert states_for_rank(saved, rank=1, world=2) == {"judge": two}  # same world size: own counters
    summed = states_for_rank(saved, rank=0, world=1)["judge"]
    assert summed["calls"] == 10 and summed["reasons"] == {"truncated": 1, "call_failed": 2}
    assert states_for_rank(saved, rank=2, world=4)["judge"]["calls"] == 0
    report = stats_report(saved, global_step=7)
    assert report["judges"]["judge"]["calls"] == 10 and report["judges"]["judge"]["invalid"] == 3
    assert [r["judge"]["calls"] for r in report["per_rank"]] == [4, 6] and report["world_size"] == 2


def test_judges_are_named_and_plain_reward_functions_skipped(fault_server):
    url = fault_server([Fault("ok")])
    a, b = LLMJudge(url), LLMJudge(url, name="factuality")
    named = judges_with_stats([a, len, LLMJudge(url), b])
    assert list(named) == ["llm_judge", "llm_judge#2", "factuality"]
    with pytest.raises(ValueError, match="no judge with JudgeStats"):
        JudgeStatsCallback([len])
    with pytest.raises(TypeError, match="no JudgeStats"):
        JudgeStatsCallback({"f": len})


def _judges(fault_server) -> dict:
    """A pointwise judge whose every reply is cut by the token limit (invalid, ``truncated``) and a
    pairwise judge that always answers (valid): both kinds of counter move every step."""
    pointwise = fault_server([Fault("ok", text='{"score": 1} but', finish_reason="length")])
    pairwise = fault_server([Fault("ok", text="Conclusion: Option 2")])
    return {
        "pointwise": LLMJudge(pointwise, max_concurrency=1, max_retries=0),
        "pairwise": LLMPairwiseJudge(pairwise, max_concurrency=1, max_retries=0),
    }


def _train(output_dir, model_dir, judges, *, resume=None, restore_flag=False):
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    class JudgingTrainer(Trainer):
        """A real Trainer whose every step asks both judges, as GRPO (pointwise) and online DPO
        (pairwise) do."""

        def training_step(self, model, inputs, num_items_in_batch=None):
            judges["pointwise"].judge(["p"] * POINTWISE_PER_STEP, ["c"] * POINTWISE_PER_STEP, ["r"] * 3)
            judges["pairwise"].judge_pairs(["p"] * PAIRWISE_PER_STEP, ["a"] * 2, ["b"] * 2)
            return super().training_step(model, inputs, num_items_in_batch)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.get_input_embeddings().requires_grad_(False)  # small optimizer state: faster checkpoints
    ids = torch.randint(0, 1000, (8, 8))
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=4, save_steps=2, per_device_train_batch_size=2,
        logging_steps=1, report_to=[], use_cpu=True, restore_callback_states_from_checkpoint=restore_flag,
    )  # fmt: skip
    callback = JudgeStatsCallback(judges)
    trainer = JudgingTrainer(
        model=model,
        args=args,
        train_dataset=[{"input_ids": r, "labels": r} for r in ids],
        callbacks=[callback],
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer, callback


def _counts(path) -> dict:
    report = json.loads(path.read_text())
    return {
        name: (s["calls"], s["valid"], s["invalid"], s["invalid_reasons"])
        for name, s in report["judges"].items()
    } | {"step": report["global_step"]}


def _expected(steps: int) -> dict:
    n, m = POINTWISE_PER_STEP * steps, PAIRWISE_PER_STEP * steps
    return {"pointwise": (n, 0, n, {"truncated": n}), "pairwise": (m, m, 0, {}), "step": steps}


def test_counts_are_saved_with_checkpoints_and_restored_on_resume(fault_server, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    judges = _judges(fault_server)
    _train(out, tiny_model_dir, judges)
    # Every save writes the checkpoint's counts into the checkpoint and into the output dir.
    assert _counts(out / "checkpoint-2" / "judge_stats.json") == _expected(2)
    assert _counts(out / "checkpoint-4" / "judge_stats.json") == _expected(4)
    assert _counts(out / "judge_stats.json") == _expected(4)
    saved = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["stateful_callbacks"]
    assert saved["JudgeStatsCallback"]["attributes"]["checkpoint_step"] == 2

    # A crash after checkpoint-2: a new process has new judges counting from zero. Resuming restores the
    # counts of step 2, so the totals equal the uninterrupted run's (without restore: 6 + 6, not 12).
    (out / "judge_stats.json").unlink()
    fresh = _judges(fault_server)
    _, callback = _train(out, tiny_model_dir, fresh, resume=str(out / "checkpoint-2"))
    assert _counts(out / "judge_stats.json") == _expected(4)
    assert _counts(out / "checkpoint-4" / "judge_stats.json") == _expected(4)
    assert fresh["pointwise"].stats.calls == 12 and fresh["pairwise"].stats.valid == 8

    # Resuming in the same process (counters already at step 4) sets them back, never double counts; with
    # restore_callback_states_from_checkpoint transformers rebuilds the callback, which finds its judges.
    trainer, callback = _train(
        out, tiny_model_dir, fresh, resume=str(out / "checkpoint-2"), restore_flag=True
    )
    rebuilt = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, JudgeStatsCallback)]
    assert len(rebuilt) == 1 and rebuilt[0] is not callback and rebuilt[0].judges == callback.judges
    assert _counts(out / "judge_stats.json") == _expected(4)
    assert fresh["pointwise"].stats.reasons == {"truncated": 12}
    for judge in (*judges.values(), *fresh.values()):
        judge.close()


_RANK_SCRIPT = """
import json, sys
import torch.distributed as dist
from trl_ext.judges import ReferenceOverlapJudge
from trl_ext.judges.stats import JudgeStatsCallback

dist.init_process_group("gloo")
rank = dist.get_rank()
judge = ReferenceOverlapJudge()
judge.judge(["p"] * (rank + 1), ["the cat"] * (rank + 1), ["the cat"] * (rank + 1))  # rank r: r + 1 calls
callback = JudgeStatsCallback({"overlap": judge})
callback.snapshot(step=5)  # a collective, as at every step end
saved = json.loads(json.dumps(callback.state()))["attributes"]["checkpoint_ranks"]
if rank == 0:
    callback.write(sys.argv[1], global_step=5)
resumed = ReferenceOverlapJudge()
JudgeStatsCallback({"overlap": resumed}).restore(saved)  # same world size: each rank gets its own back
assert resumed.stats.calls == rank + 1, (rank, resumed.stats.calls)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_counts_of_every_rank_are_gathered_saved_and_restored(tmp_path):
    """Two real processes (torchrun, gloo): the saved state has each rank's counters, the file their sum."""
    import os
    import socket
    import subprocess
    import sys

    script = tmp_path / "ranks.py"
    script.write_text(_RANK_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(port), str(script), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "judge_stats.json").read_text())
    assert report["world_size"] == 2 and report["judges"]["overlap"]["calls"] == 3
    assert [r["overlap"]["calls"] for r in report["per_rank"]] == [1, 2]
