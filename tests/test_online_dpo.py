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


def _zero3_launch_config(tmp_path) -> str:
    """A 2-process DeepSpeed ZeRO-3 launch config like ``recipes/accelerate/cpu_zero2.yaml`` (stage 3,
    partitioned init); ``recipes/accelerate/zero3.yaml`` is sized for 8 GPUs."""
    ds = tmp_path / "ds_zero3.json"
    ds.write_text(json.dumps({
        "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
        "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}, "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto", "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
    }))  # fmt: skip
    config = tmp_path / "zero3.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\ndeepspeed_config:\n"
        f"  deepspeed_config_file: {ds}\n  zero3_init_flag: true\nnum_machines: 1\nnum_processes: 2\n"
        "machine_rank: 0\nmain_process_port: 29519\nmain_training_function: main\nrdzv_backend: static\n"
        "same_network: true\n"
    )
    return str(config)


_ZERO3_SCRIPT = """
import json, sys, torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl_ext.assets import embedded_default
from trl_ext.judges.offline import ReferenceOverlapJudge
from trl_ext.trainers.online_dpo import SelfImprovingOnlineDPOConfig, SelfImprovingOnlineDPOTrainer

out, text = sys.argv[1], sys.argv[2]
args = SelfImprovingOnlineDPOConfig(
    output_dir=out, max_steps=1, per_device_train_batch_size=1, num_rollouts=2, max_new_tokens=4,
    use_cpu=True, bf16=False, report_to=[], save_strategy="no", disable_tqdm=True, logging_steps=1,
)
embedded = embedded_default()
tok = AutoTokenizer.from_pretrained(embedded.tokenizer_dir)
model = AutoModelForCausalLM.from_pretrained(embedded.model_dir, dtype=torch.float32)  # partitioned
ids = tok(text, add_special_tokens=False)["input_ids"]
rows = [{"id": f"d{i}", "prefix_ids": ids[:10], "suffix_ids": ids[10:16]} for i in range(4)]
rows = Dataset.from_list(rows)
trainer = SelfImprovingOnlineDPOTrainer(
    model=model, reward_funcs=ReferenceOverlapJudge(threshold=None), args=args, train_dataset=rows,
    processing_class=tok,
)
trainer.train()
if trainer.is_world_process_zero():
    kl = [h["objective/kl"] for h in trainer.state.log_history if "objective/kl" in h]
    json.dump({"reference": type(trainer.ref_model).__name__, "kl": kl}, open(out + "/result.json", "w"))
"""


@pytest.mark.slow
def test_zero3_builds_its_own_reference(tmp_path):
    """Under DeepSpeed ZeRO-3 (2 CPU processes) a trainer given only the policy object builds the frozen
    reference itself (TRL's deep copy refuses a partitioned model) and trains; KL at step 0 is 0."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "zero3_train.py"
    script.write_text(_ZERO3_SCRIPT)
    repo = Path(__file__).resolve().parents[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", _zero3_launch_config(tmp_path), str(script),
           str(tmp_path), TEXTS[0]]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"reference": "DeepSpeedEngine", "kl": [0.0]}


@pytest.mark.slow
@pytest.mark.parametrize("launch_config", ["cpu_2proc", "cpu_zero2"])
def test_two_process_recipe_run(tmp_path, qwen_tokenizer, embedded, launch_config):
    """The phase3 recipe under ``accelerate launch`` with 2 CPU processes (gloo, DeepSpeed ZeRO-2): counts
    are summed over ranks, each rank audits its own pools, the final model directory and metrics.json are
    written once."""
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
    launch = ["--config_file", f"recipes/accelerate/{launch_config}.yaml"]  # cpu_zero2: DeepSpeed on CPU
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


# ---------------------------------------------------------------------------------------------- precision
@pytest.mark.slow
@pytest.mark.parametrize("chunked", [True, False])
def test_policy_and_reference_share_precision_under_bf16(
    tmp_path, tiny_model_dir, qwen_tokenizer, rows, chunked
):
    """fp32 weights + ``bf16=True`` (autocast): at step 0 the policy *is* the reference, so KL and margin are
    exactly 0 whichever log-prob path runs (the fused chunked head used to bypass the reference's autocast
    wrapper: KL -4e-4); one step at lr 1e-7 then changes the fp32 weights, which stay fp32."""
    trainer = make_trainer(
        tmp_path, tiny_model_dir, qwen_tokenizer, rows, ReferenceOverlapJudge(threshold=None),
        bf16=True, logprob_chunked=chunked, learning_rate=1e-7, num_rollouts=2, max_new_tokens=4,
    )  # fmt: skip
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    (log,) = [h for h in trainer.state.log_history if "objective/kl" in h]
    assert log["dpo_kept_prefixes"] > 0
    assert log["objective/kl"] == 0.0 and log["dpo_margin_avg"] == 0.0
    params = dict(trainer.model.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())
    changed = sum(int((params[n].detach() != w).sum()) for n, w in before.items())
    assert changed / sum(w.numel() for w in before.values()) > 0.9


def test_low_precision_trainable_weights_are_refused(tmp_path, tiny_model_dir, qwen_tokenizer, rows):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    args = SelfImprovingOnlineDPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[])
    with pytest.raises(ValueError, match="Load the model in float32"):
        SelfImprovingOnlineDPOTrainer(
            model=model, reward_funcs=ReferenceOverlapJudge(), args=args, train_dataset=rows,
            processing_class=qwen_tokenizer,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- reference
def test_in_memory_model_gets_its_reference_from_the_object(tmp_path, tiny_model_dir, qwen_tokenizer, rows):
    """A model built in memory (no checkpoint path) trains with beta > 0: the reference is a frozen copy of
    the object. Where a copy is impossible (ZeRO-3) the reference is loaded from the checkpoint path, and an
    in-memory model gets an error that says what to do."""
    from transformers import AutoConfig

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    model.config._name_or_path = ""
    args = SelfImprovingOnlineDPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], beta=0.1, num_rollouts=2,
        max_new_tokens=4, per_device_train_batch_size=2, disable_tqdm=True,
    )  # fmt: skip
    trainer = SelfImprovingOnlineDPOTrainer(
        model=model, reward_funcs=ReferenceOverlapJudge(threshold=None), args=args, train_dataset=rows,
        processing_class=qwen_tokenizer,
    )  # fmt: skip
    ref = dict(trainer.ref_model.named_parameters())
    assert all(torch.equal(p, ref[n]) and not ref[n].requires_grad for n, p in model.named_parameters())
    assert math.isfinite(trainer.training_step(trainer.model, _batch(trainer)).item())
    with pytest.raises(ValueError, match="save_pretrained"):
        SelfImprovingOnlineDPOTrainer.reference_from_checkpoint(model, args)
    saved = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loaded = SelfImprovingOnlineDPOTrainer.reference_from_checkpoint(saved, args)
    assert loaded is not saved and loaded.dtype == torch.float32
    assert all(torch.equal(p, dict(loaded.named_parameters())[n]) for n, p in saved.named_parameters())


# ---------------------------------------------------------------------------------------------- non-finite
@pytest.mark.slow
def test_non_finite_step_stops_before_any_bad_checkpoint(tmp_path, tiny_model_dir, qwen_tokenizer, rows):
    """lr 1e30 / wd 0.1: step 1 gives huge but finite weights, step 2 a NaN gradient norm. The update is
    skipped, training stops naming the step and the last good checkpoint, every checkpoint on disk is
    finite and metrics.json says why."""
    from safetensors.torch import load_file

    from trl_ext.training_guards import NonFiniteTrainingError

    out = tmp_path / "run"
    trainer = make_trainer(
        out, tiny_model_dir, qwen_tokenizer, rows, ReferenceOverlapJudge(threshold=None), max_steps=4,
        learning_rate=1e30, weight_decay=0.1, lr_scheduler_type="constant", save_strategy="steps",
        save_steps=1, num_rollouts=2, max_new_tokens=4,
    )  # fmt: skip
    with pytest.raises(NonFiniteTrainingError, match=r"at step \d.*Last good checkpoint: .*checkpoint-\d"):
        trainer.train()
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert checkpoints and trainer.state.global_step < 4
    for checkpoint in checkpoints:
        weights = load_file(checkpoint / "model.safetensors")
        assert all(bool(torch.isfinite(w).all()) for w in weights.values()), checkpoint
    assert json.loads((out / "metrics.json").read_text())["stopped_reason"].startswith("non_finite")


# ------------------------------------------------------------------------------------- TRL data forms
def _prompt_only_rows(tok, conversational: bool) -> Dataset:
    prompts = [t[:40] for t in TEXTS]
    if conversational:
        prompts = [[{"role": "user", "content": p}] for p in prompts]
    return Dataset.from_list([{"prompt": p} for p in prompts])


@pytest.mark.parametrize("conversational", [False, True])
def test_trl_prompt_only_rows_with_reward_model_and_weighted_funcs(
    tmp_path, tiny_model_dir, qwen_tokenizer, conversational
):
    """TRL's own online-DPO cases (``test_train`` / ``test_train_with_reward_funcs``) on its prompt-only
    formats, text and chat messages: a reward model and two weighted reward functions both train; chat
    prompts go through the chat template with the generation prompt, and functions get TRL's message
    forms."""
    from transformers import AutoModelForSequenceClassification

    dataset = _prompt_only_rows(qwen_tokenizer, conversational)
    seen = {}

    def record_reward(prompts, completions, completion_ids, **kwargs):
        seen.update(prompt=prompts[0], completion=completions[0], columns=set(kwargs))
        return [float(len(c)) for c in completion_ids]

    reward_model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    for funcs, extra in [
        (reward_model, {"reward_processing_classes": qwen_tokenizer}),
        ([record_reward, lambda **kw: [None] * len(kw["prompts"])], {}),
    ]:
        trainer = SelfImprovingOnlineDPOTrainer(  # a model path (TRL's test_train_model_str), then an object
            model=str(tiny_model_dir) if extra else AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            reward_funcs=funcs,
            args=SelfImprovingOnlineDPOConfig(
                output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, num_rollouts=2,
                max_new_tokens=4, rollouts_stop_at_eos=True, prefix_column="prompt", include_pivot=False,
                use_cpu=True, bf16=False, report_to=[], save_strategy="no", disable_tqdm=True,
                reward_weights=None if not isinstance(funcs, list) else [0.7, 0.3],
            ),
            train_dataset=dataset,
            processing_class=qwen_tokenizer,
            **extra,
        )  # fmt: skip
        trainer.train()
        assert "train_loss" in trainer.state.log_history[-1]
    prompt_ids = trainer._prefix_ids(dataset[0]["prompt"])
    generation_prompt = qwen_tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert (prompt_ids[-len(generation_prompt) :] == generation_prompt) == conversational
    if conversational:
        assert seen["prompt"][0]["role"] == "user" and seen["completion"][0]["role"] == "assistant"
    else:
        assert isinstance(seen["prompt"], str) and isinstance(seen["completion"], str)
    # None from one func means "does not apply": the candidate keeps the other func's weighted reward
    assert all(not math.isnan(s) for r in trainer.last_step["records"] for s in r.scores.scores)


def test_chat_pivot_is_rendered_like_a_trl_completion(tmp_path, tiny_model_dir, qwen_tokenizer, scorer):
    from trl.data_utils import apply_chat_template

    prompt = [{"role": "user", "content": "Continue the story."}]
    reply = [{"role": "assistant", "content": TEXTS[0]}]
    rows = Dataset.from_list([{"id": "c0", "prompt": prompt, "answer": reply}] * 2)
    trainer = make_trainer(
        tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer, prefix_column="prompt", suffix_column="answer"
    )
    trainer.training_step(trainer.model, _batch(trainer))
    expected = apply_chat_template({"prompt": prompt, "completion": reply}, qwen_tokenizer)
    pivot = trainer.last_step["pools"][0][0]
    completion_ids = qwen_tokenizer.encode(expected["completion"], add_special_tokens=False)
    assert pivot.kind == "pivot" and pivot.ids == completion_ids
    assert trainer.last_step["prefix_texts"][0].endswith("assistant\n")
    with pytest.raises(ValueError, match="column 'prompt': expected text, token ids or chat messages"):
        trainer._prefix_ids({"role": "user", "content": "not a list"})


# ---------------------------------------------------------------------------------------------- generation
@pytest.mark.parametrize("think_mode", [False, True])
def test_generation_kwargs_reach_the_rollouts(
    tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer, think_mode
):
    """``generation_kwargs`` override the sampling settings as in TRL: greedy decoding gives K identical
    rollouts per prefix (they used to be sampled regardless); budgets stay config fields."""
    trainer = make_trainer(
        tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer, think_mode=think_mode, think_max_tokens=3,
        generation_kwargs={"do_sample": False}, top_k=40, temperature=0.8,
    )  # fmt: skip
    assert trainer.rollout_sampling_kwargs() | {"do_sample": True} == {
        "do_sample": True, "temperature": 0.8, "top_p": 1.0, "top_k": 40, "repetition_penalty": 1.0,
    }  # fmt: skip
    assert trainer.generation_config.do_sample is False and trainer.generation_config.top_k == 40  # TRL's
    trainer.training_step(trainer.model, _batch(trainer))
    for pool in trainer.last_step["pools"]:
        rolls = [c.ids for c in pool if c.kind == "rollout"]
        assert len(rolls) == 4 and all(r == rolls[0] for r in rolls)
    with pytest.raises(ValueError, match=r"generation_kwargs\['max_new_tokens'\].*max_new_tokens"):
        SelfImprovingOnlineDPOConfig(
            output_dir=str(tmp_path), use_cpu=True, bf16=False, generation_kwargs={"max_new_tokens": 3}
        )


def test_missing_eos_penalty(tmp_path, tiny_model_dir, qwen_tokenizer, rows, scorer):
    """TRL's ``missing_eos_penalty`` is subtracted from rollouts that did not stop at EOS, before the pair is
    picked; document text (pivot, rewrite) is never penalised; with EOS suppressed the config refuses it."""
    from trl_ext.pairing import PoolScores
    from trl_ext.trainers.online_dpo import Candidate

    trainer = make_trainer(
        tmp_path,
        tiny_model_dir,
        qwen_tokenizer,
        rows,
        scorer,
        rollouts_stop_at_eos=True,
        missing_eos_penalty=10.0,
    )
    eos = trainer.eos_token_ids[0]
    pool = [Candidate("pivot", [5, 6], [1, 1], [5, 6]), Candidate("rollout", [7, eos], [1, 1], [7, eos]),
            Candidate("rollout", [8, 9], [1, 1], [8, 9]), Candidate("rewrite", [3], [1], [3])]  # fmt: skip
    scores = [PoolScores([0.5, 0.25, 1.0, float("nan")], [0] * 4, [0] * 4, 4, 0)]
    trainer._apply_missing_eos_penalty([pool], scores)
    assert scores[0].scores[:3] == [0.5, 0.25, -9.0] and math.isnan(scores[0].scores[3])
    trainer.training_step(trainer.model, _batch(trainer))  # the tiny model never samples EOS in 6 tokens
    for record, pool in zip(trainer.last_step["records"], trainer.last_step["pools"]):
        for kind, cand, score in zip(record.kinds, pool, record.scores.scores):
            assert (score < 0) == (kind == "rollout" and not trainer._ends_with_eos(cand))
        assert record.choice is None or record.kinds[record.choice.chosen] == "pivot"
    with pytest.raises(ValueError, match="missing_eos_penalty needs rollouts_stop_at_eos"):
        SelfImprovingOnlineDPOConfig(
            output_dir=str(tmp_path), use_cpu=True, bf16=False, missing_eos_penalty=1.0
        )


# ---------------------------------------------------------------------------------------------- judges
def test_judge_stats_and_invalid_replies_are_saved(
    tmp_path, tiny_model_dir, qwen_tokenizer, rows, fault_server
):
    """Like RLMT: ``judge_stats.json`` in every checkpoint and in output_dir, and every invalid reply (here
    a reply cut by the token limit and one with no conclusion) in ``judge_invalid.rank0.jsonl``."""
    from trl_ext.judges.pairwise import LLMPairwiseJudge
    from trl_ext.judges.stats import JudgeStatsCallback

    url = fault_server([
        Fault("ok", text="<think>Option 1 reads better. Conclusion: Option 1", finish_reason="length"),
        Fault("ok", text="Both are fine."),
        Fault("ok", text="Conclusion: Option 2"),
    ])  # fmt: skip
    judge = LLMPairwiseJudge(url, max_concurrency=1, max_retries=0)
    out = tmp_path / "run"
    trainer = make_trainer(
        out, tiny_model_dir, qwen_tokenizer, rows, judge, save_strategy="steps", save_steps=1
    )
    assert sum(isinstance(cb, JudgeStatsCallback) for cb in trainer.callback_handler.callbacks) == 1
    trainer.train()
    for folder in (out, out / "checkpoint-1"):
        stats = json.loads((folder / "judge_stats.json").read_text())
        (counts,) = stats["judges"].values()
        assert counts["calls"] == 20 and counts["invalid"] == 2, counts
    invalid = [json.loads(line) for line in (out / "judge_invalid.rank0.jsonl").read_text().splitlines()]
    assert len(invalid) == 2 and {r["raw"] for r in invalid} >= {"Both are fine."}


# ---------------------------------------------------------------------------------------------- learning
class EvenTokenJudge:
    """A rule judge with a visible preference: the option whose tokens have the larger share of even ids
    wins; equal shares are an invalid tie (as with every judge here)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def share(self, text: str) -> float:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return sum(i % 2 == 0 for i in ids) / max(len(ids), 1)

    def judge_pairs(self, prefixes, options_1, options_2):
        from trl_ext.judges.base import JudgeVerdict

        verdicts = []
        for a, b in zip(options_1, options_2):
            sa, sb = self.share(a), self.share(b)
            verdicts.append(
                JudgeVerdict.invalid("tie") if sa == sb else JudgeVerdict(1.0 if sa > sb else 2.0)
            )
        return verdicts


@pytest.mark.slow
def test_online_dpo_learns_what_the_judge_prefers(tmp_path, tiny_model_dir, qwen_tokenizer):
    """Rollouts only (no pivot), top-k 10 sampling: a judge preferring even token ids moves the policy toward
    them; the even share of freshly sampled tokens rises from ~0.5 to well above."""
    prefixes = [qwen_tokenizer(t, add_special_tokens=False)["input_ids"][:8] for t in TEXTS]
    dataset = Dataset.from_list([{"id": f"d{i}", "prefix_ids": p} for i, p in enumerate(prefixes)] * 16)
    trainer = make_trainer(
        tmp_path, tiny_model_dir, qwen_tokenizer, dataset, EvenTokenJudge(qwen_tokenizer), max_steps=16,
        per_device_train_batch_size=4, include_pivot=False, max_new_tokens=8, learning_rate=3e-3,
        lr_scheduler_type="constant", weight_decay=0.0, logprob_chunked=False, logging_steps=4,
        generation_kwargs={"top_k": 10}, judge_failure_patience=0, seed=3,
    )  # fmt: skip

    def even_share() -> float:
        torch.manual_seed(0)
        ids = torch.tensor(prefixes).repeat(8, 1)
        with torch.no_grad():
            out = trainer.model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=10, max_new_tokens=16,
                min_new_tokens=16, pad_token_id=qwen_tokenizer.pad_token_id,
            )[:, ids.size(1) :]  # fmt: skip
        return (out % 2 == 0).float().mean().item()

    before = even_share()
    trainer.train()
    after = even_share()
    assert 0.35 < before < 0.65 and after > before + 0.2, (before, after)
