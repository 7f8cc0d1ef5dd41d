"""SelfImprovingOnlineDPOTrainer on the embedded tiny Qwen3 (CPU): call counts, loss, masks, logging,
resume."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from fault_server import Fault
from transformers import AutoModelForCausalLM
from trl.experimental.online_dpo import OnlineDPOTrainer

from trl_ext.judges.offline import ReferenceOverlapJudge
from trl_ext.judges.pairwise import LikelihoodPairwiseJudge
from trl_ext.trainers.online_dpo import SelfImprovingOnlineDPOConfig, SelfImprovingOnlineDPOTrainer

TEXTS = [
    "The quick brown fox jumps over the lazy dog and then runs into the deep forest where the owls live.",
    "In 1905 Einstein published four papers that changed physics, including one on the photoelectric effect.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt, which you whisk until smooth.",
    "Rivers carry sediment from the mountains down to the sea, slowly building wide and fertile deltas.",
]


class CountingJudge:
    """A real judge (likelihood scorer) that also records what it was asked: the number and content of
    calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def judge_pairs(self, prefixes, options_1, options_2):
        self.calls.append((list(prefixes), list(options_1), list(options_2)))
        return self.inner.judge_pairs(prefixes, options_1, options_2)


@pytest.fixture(scope="module")
def rows(qwen_tokenizer):
    out = []
    for i, text in enumerate(TEXTS):
        ids = qwen_tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append({"id": f"doc{i}", "prefix_ids": ids[:10], "suffix_ids": ids[10:18], "rewrite": text[-30:]})
    return Dataset.from_list(out * 4)


@pytest.fixture(scope="module")
def scorer(tiny_model_dir, qwen_tokenizer):
    return LikelihoodPairwiseJudge(str(tiny_model_dir), qwen_tokenizer)


def make_trainer(tmp_path, tiny_model_dir, tok, rows, reward, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        num_rollouts=4,
        max_new_tokens=6,
        bf16=False,
        use_cpu=True,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        gradient_checkpointing=False,
        seed=11,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return SelfImprovingOnlineDPOTrainer(
        model=model,
        reward_funcs=reward,
        args=SelfImprovingOnlineDPOConfig(**kwargs),
        train_dataset=rows,
        processing_class=tok,
    )


def _batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def test_trl_contract():
    """The private TRL 1.16 members this trainer relies on still exist with the expected signatures."""
    params = inspect.signature(OnlineDPOTrainer._calculate_rewards_from_functions).parameters
    assert list(params)[:4] == ["self", "prompts", "completions", "completion_ids_list"]
    assert "start_time" in inspect.signature(OnlineDPOTrainer._maybe_log_save_evaluate).parameters
    assert list(inspect.signature(OnlineDPOTrainer.training_step).parameters)[:3] == [
        "self",
        "model",
        "inputs",
    ]
    assert list(inspect.signature(SelfImprovingOnlineDPOTrainer.__init__).parameters)[:5] == [
        "self",
        "model",
        "ref_model",
        "reward_funcs",
        "args",
    ]
    assert isinstance(OnlineDPOTrainer.beta, property)


@pytest.mark.parametrize(
    "mode,repeats,rewrite,expected",
    [("full", 1, None, 10), ("pivot", 1, None, 4), ("full", 2, "rewrite", 30)],
)
def test_exact_judge_calls(
    tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer, mode, repeats, rewrite, expected
):
    judge = CountingJudge(scorer)
    trainer = make_trainer(
        tmp_path,
        tiny_model_dir,
        qwen_tokenizer,
        rows,
        judge,
        judging_mode=mode,
        judge_repeats=repeats,
        rewrite_column=rewrite,
    )
    trainer.training_step(trainer.model, _batch(trainer))
    ((prefixes, o1, o2),) = judge.calls
    assert len(prefixes) == 2 * expected == 2 * trainer.judge_calls_per_prefix
    records = trainer.last_step["records"]
    assert all(r.scores.num_calls == expected for r in records)
    assert trainer.stats["judge_calls"] == [2.0 * expected]
    if mode == "pivot":  # every call involves the pivot text
        pivots = {trainer._judge_text(pool[0].judge_ids) for pool in trainer.last_step["pools"]}
        assert all(a in pivots or b in pivots for a, b in zip(o1, o2))
    if rewrite:
        assert records[0].kinds == ["pivot"] + ["rollout"] * 4 + ["rewrite"]


def _hand_logp(model, prompt, cand):
    ids = torch.tensor([prompt + cand.ids])
    with torch.no_grad():
        logps = model(ids).logits[0, :-1].double().log_softmax(-1)
    token_lp = logps.gather(1, ids[0, 1:, None])[:, 0]
    mask = torch.tensor([0] * len(prompt) + cand.score_mask, dtype=torch.double)[1:]
    return float((token_lp * mask).sum())


def test_dpo_loss_equals_hand_computed(tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer):
    trainer = make_trainer(tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer)
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy away from the frozen reference so the margin is not zero
        for p in trainer.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    loss = trainer.training_step(trainer.model, _batch(trainer))
    step = trainer.last_step
    assert len(step["chosen"]) == 2
    beta, terms = 0.1, []
    for prompt, c, r in zip(step["prompts"], step["chosen"], step["rejected"]):
        pi = _hand_logp(trainer.model, prompt, c) - _hand_logp(trainer.model, prompt, r)
        ref = _hand_logp(trainer.ref_model, prompt, c) - _hand_logp(trainer.ref_model, prompt, r)
        terms.append(-F.logsigmoid(torch.tensor(beta * (pi - ref))).item())
    assert loss.item() == pytest.approx(sum(terms) / len(terms), abs=1e-4)
    assert not math.isclose(loss.item(), math.log(2), abs_tol=1e-4)
    # chosen really is the argmax of the pool and rejected the argmin
    for rec in step["records"]:
        assert rec.scores.scores[rec.choice.chosen] == max(rec.scores.scores)
        assert rec.scores.scores[rec.choice.rejected] == min(rec.scores.scores)


def test_rf_nll_objective(tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer):
    trainer = make_trainer(
        tmp_path,
        tiny_model_dir,
        qwen_tokenizer,
        rows,
        scorer,
        objective="rf_nll",
        gradient_accumulation_steps=2,
    )
    loss = 2 * trainer.training_step(
        trainer.model, _batch(trainer)
    )  # scaled by 1/GA like Trainer.training_step
    step = trainer.last_step
    total = sum(_hand_logp(trainer.model, p, c) for p, c in zip(step["prompts"], step["chosen"]))
    tokens = sum(sum(c.score_mask) for c in step["chosen"])
    assert loss.item() == pytest.approx(-total / tokens, abs=1e-4)
    assert "rf_nll" in trainer.stats and "dpo_margin_avg" not in trainer.stats


def test_rollouts_exact_length_or_stop_at_eos(tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer):
    trainer = make_trainer(tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer)
    trainer.training_step(trainer.model, _batch(trainer))
    rolls = [c for pool in trainer.last_step["pools"] for c in pool if c.kind == "rollout"]
    assert all(len(c.ids) == 6 for c in rolls) and trainer.stats["rollout_eos_rate"] == [0.0]
    assert trainer.stats["pivot_len_mean"] == [8.0]


def test_think_mode_masks_boundary_and_judges_suffix_only(
    tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer
):
    judge = CountingJudge(scorer)
    trainer = make_trainer(
        tmp_path, tiny_model_dir, qwen_tokenizer, rows, judge, think_mode=True, think_max_tokens=4
    )
    trainer.training_step(trainer.model, _batch(trainer))
    close = qwen_tokenizer.convert_tokens_to_ids("</think>")
    open_ids = qwen_tokenizer.encode(" <think>", add_special_tokens=False)
    step = trainer.last_step
    assert all(p[-len(open_ids) :] == open_ids for p in step["prompts"])
    judged = {t for _, o1, o2 in judge.calls for t in o1 + o2}
    for pool in step["pools"]:
        pivot, rolls = pool[0], pool[1:]
        assert pivot.ids[0] == close and pivot.score_mask[0] == 0  # empty thought + inserted boundary
        for c in rolls:
            assert len(c.ids) == len(c.score_mask)
            if not c.closed_by_model:  # the inserted </think> sits right after the thought, masked
                assert c.ids[c.thought_len] == close and c.score_mask[c.thought_len] == 0
            assert c.ids[-len(c.judge_ids) :] == c.judge_ids
            assert trainer._judge_text(c.judge_ids) in judged
    assert "autonomous_closed_think_rate" in trainer.stats and trainer.stats["avg_thought_tokens"][0] <= 4


def test_all_ties_are_skipped_and_logged(tmp_path, tiny_model_dir, qwen_tokenizer, rows):
    tie_judge = LikelihoodPairwiseJudge(str(tiny_model_dir), qwen_tokenizer, tie_tolerance=float("inf"))
    trainer = make_trainer(tmp_path, tiny_model_dir, qwen_tokenizer, rows, tie_judge)
    loss = trainer.training_step(trainer.model, _batch(trainer))
    assert loss.item() == 0.0
    assert trainer.stats["dpo_kept_prefixes"] == [0.0] and trainer.stats["dpo_all_tie_prefixes"] == [2.0]
    assert trainer.stats["judge_invalid_rate"] == [1.0]
    assert trainer.stats["chosen_is_rollout_rate"] == []  # undefined this step, left out of the average


def test_pointwise_reward_funcs_score_the_pool(tmp_path, tiny_model_dir, qwen_tokenizer, rows):
    trainer = make_trainer(
        tmp_path, tiny_model_dir, qwen_tokenizer, rows, [ReferenceOverlapJudge(threshold=None)]
    )
    trainer.training_step(trainer.model, _batch(trainer))
    for rec in trainer.last_step["records"]:
        assert rec.scores.scores[0] == pytest.approx(1.0)  # the pivot overlaps itself perfectly
        assert rec.choice is None or rec.choice.chosen == 0
    assert trainer.judge_calls_per_prefix == 0


@pytest.mark.slow
def test_train_logs_metrics_json_and_resumes(tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer):
    out = tmp_path / "run"
    trainer = make_trainer(
        out,
        tiny_model_dir,
        qwen_tokenizer,
        rows,
        scorer,
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
        pool_audit=True,
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    for key in (
        "chosen_is_rollout_rate",
        "pivot_pointwise_mean",
        "judge_latency_s_avg",
        "gen_latency_s_avg",
        "judge_invalid_rate",
        "dpo_margin_avg",
        "dpo_kept_prefixes",
    ):
        assert key in logs[0], key
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] and metrics["completed_steps"] == 2 and metrics["judge_calls_per_prefix"] == 10
    audit = [json.loads(line) for line in (out / "pool_audit.rank0.jsonl").read_text().splitlines()]
    assert len(audit) == 4 and all(len(a["scores"]) == 5 for a in audit)

    resumed = make_trainer(
        out, tiny_model_dir, qwen_tokenizer, rows, scorer, max_steps=3, save_strategy="steps", save_steps=1
    )
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    assert resumed.state.global_step == 3
    assert [h["step"] for h in resumed.state.log_history if "loss" in h][-1] == 3
    assert json.loads((out / "metrics.json").read_text())["completed_steps"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("launch_config", ["cpu_2proc", "zero2"])
def test_two_process_recipe_run(tmp_path, qwen_tokenizer, embedded, launch_config):
    """The phase3 recipe under ``accelerate launch`` with 2 CPU processes (gloo): counts are summed over
    ranks,
    each rank audits its own pools, the final model directory and metrics.json are written once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from trl_ext.data.rows import write_rows

    rows = []  # every row has the same prefix: ranks must still sample different rollouts (per-rank seeds)
    for i, text in enumerate(TEXTS[:1] * 8):
        ids = qwen_tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append(
            {
                "id": f"d{i}",
                "prefix_ids": ids[:10],
                "suffix_ids": ids[10:16],
                "split": "train",
                "source_sha": f"s{i}",
                "source_id": f"doc{i}",
            }
        )
    write_rows(tmp_path / "examples.jsonl", rows)
    repo = Path(__file__).resolve().parents[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    launch = ["--config_file", f"recipes/accelerate/{launch_config}.yaml"]  # zero2 = DeepSpeed ZeRO-2 on CPU
    cmd = [
        str(accelerate),
        "launch",
        *launch,
        str(repo / "recipes" / "phase3_online_dpo.py"),
        "--train_rows",
        str(tmp_path / "examples.jsonl"),
        "--output_dir",
        str(tmp_path / "phase3"),
        "--judge",
        "likelihood",
        "--max_steps",
        "2",
        "--num_rollouts",
        "3",
        "--max_new_tokens",
        "4",
        "--per_device_train_batch_size",
        "1",
        "--gradient_accumulation_steps",
        "1",
        "--logging_steps",
        "1",
        "--save_steps",
        "1",
        "--disable_tqdm",
        "true",
    ]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "phase3"
    metrics = json.loads((out / "metrics.json").read_text())
    steps = [h for h in metrics["history"] if "dpo_total_prefixes" in h]
    assert metrics["completed_steps"] == 2 and metrics["prefixes_per_step"] == 2
    assert all(h["dpo_total_prefixes"] == 2 for h in steps)  # one prefix per rank, summed
    audits = [
        [json.loads(line) for line in (out / f"pool_audit.rank{r}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    ]
    assert len(audits[0]) == len(audits[1]) == 2
    for a, b in zip(*audits):
        assert a["candidate_sha1"][0] == b["candidate_sha1"][0]  # the same pivot ...
        assert set(a["candidate_sha1"][1:]).isdisjoint(b["candidate_sha1"][1:])  # ... different rollouts
    assert (out / "final" / "config.json").exists() and (out / "final" / "tokenizer.json").exists()


def test_llm_judge_drives_the_pool_and_a_dead_judge_stops_training(
    tmp_path, tiny_model_dir, qwen_tokenizer, rows, fault_server
):
    """The trainer with the real HTTP pairwise judge: 10 calls per prefix reach the server; a judge whose
    every call fails stops training with a clear error instead of training on nothing; a judge URL with no
    server fails at construction."""
    from trl_ext.judges.pairwise import LLMPairwiseJudge

    url = fault_server([Fault("ok", text="Conclusion: Option 1")])
    judge = LLMPairwiseJudge(url, max_concurrency=4, max_retries=0)
    trainer = make_trainer(tmp_path, tiny_model_dir, qwen_tokenizer, rows, judge)
    trainer.training_step(trainer.model, _batch(trainer))
    assert len(fault_server.servers[0].requests) == 20
    assert trainer.stats["judge_invalid_rate"] == [0.0] and trainer.stats["dpo_kept_prefixes"] == [2.0]

    dead = fault_server([Fault("http500")])
    trainer = make_trainer(tmp_path, tiny_model_dir, qwen_tokenizer, rows, None, judge="llm",
                           judge_base_urls=[dead], judge_max_retries=0, judge_failure_patience=1)  # fmt: skip
    with pytest.raises(RuntimeError, match="every judge call was invalid"):
        trainer.training_step(trainer.model, _batch(trainer))

    with pytest.raises(TimeoutError):
        make_trainer(tmp_path, tiny_model_dir, qwen_tokenizer, rows, None, judge="llm",
                     judge_base_urls=["http://127.0.0.1:9"], judge_ready_timeout_s=1)  # fmt: skip
