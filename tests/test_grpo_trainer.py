"""ThinkingGRPOTrainer on the tiny Qwen3 model: masking, suffix-only rewards, TRL's None semantics, invalid
verdicts, judge readiness and patience, precision, non-finite stops, resume, LoRA, and that it learns.
CPU only; budgets are tiny to stay fast."""

import inspect
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from fault_server import Fault
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from trl_ext.data.rl_rows import RLRowConfig, build_rl_rows
from trl_ext.group_metrics import alert_name
from trl_ext.judges import LLMJudge, ReferenceOverlapJudge
from trl_ext.trainers.grpo import (
    JudgeUnavailableError,
    RLMTRunState,
    ThinkingGRPOConfig,
    ThinkingGRPOTrainer,
)
from trl_ext.training_guards import NonFiniteTrainingError

CLOSE = 151668
LEARN_STEPS, LEARN_LR = 12, 3e-3  # test_mean_reward_rises_with_a_learnable_reward
K = 4


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    """The checkpoint's own tokenizer (as a recipe loads it): its EOS matches the model's."""
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def rl_dataset(embedded, tokenizer):
    """RL rows from real corpus text with one inserted teacher thought per document. Prompts are
    short (≥16 tokens, not METHOD's 128): TRL's fused log-prob head scores every position on CPU,
    so step time grows with prompt length; nothing under test depends on it."""
    rows = []
    for line in Path(embedded.corpus_path).read_text().splitlines()[:6]:
        doc = json.loads(line)
        words = doc["text"].split(" ")
        text = (
            " ".join(words[:20]) + " <think>Who is speaking, and why now?</think> " + " ".join(words[20:60])
        )
        rows.append({"id": doc["source_id"], "text": text})
    config = RLRowConfig(min_before_tokens=16, min_after_tokens=16, reference_tokens=32)
    rl_rows, report = build_rl_rows(rows, tokenizer, config)
    assert len(rl_rows) >= 4, report.as_dict()
    return Dataset.from_list(rl_rows)


def make_args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"),
        num_generations=K,
        per_device_train_batch_size=2
        * K,  # one micro-batch per step: TRL's fused log-prob head is slow on CPU
        prefixes_per_step=2,
        think_max_tokens=4,
        suffix_max_tokens=6,
        top_p=1.0,  # top-p sorting over 152k logits is the CPU bottleneck; behaviour is the same
        max_steps=1,
        bf16=False,
        use_cpu=True,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        gradient_checkpointing=False,
        seed=7,
        dataloader_num_workers=0,
        judge_ready_timeout_s=5,
    )
    return ThinkingGRPOConfig(**(values | overrides))


def make_trainer(tmp_path, tiny_model_dir, tokenizer, dataset, reward_funcs=None, model=None, **overrides):
    return ThinkingGRPOTrainer(
        model=model or str(tiny_model_dir),
        reward_funcs=reward_funcs or [ReferenceOverlapJudge(threshold=0.02)],
        args=make_args(tmp_path, **overrides),
        train_dataset=dataset,
        processing_class=tokenizer,
    )


def group_inputs(dataset, n_prefixes=2):
    return [dict(dataset[i]) for i in range(n_prefixes) for _ in range(K)]


def test_config_defaults_are_method_section_4():
    args = ThinkingGRPOConfig(output_dir="unused", bf16=False, use_cpu=True, per_device_train_batch_size=16)
    assert (args.think_max_tokens, args.suffix_max_tokens, args.num_generations) == (48, 128, 16)
    assert (args.loss_type, args.scale_rewards, args.beta) == ("dr_grpo", "none", 0.02)
    assert (args.learning_rate, args.max_grad_norm, args.weight_decay) == (1e-7, 0.1, 0.0)
    assert args.lr_scheduler_type == "cosine" and args.warmup_steps == 2 and args.top_p == 0.95
    assert args.gradient_accumulation_steps == 2 and args.generation_batch_size == 32  # 2 prefixes × 16
    assert args.complete_groups_only and not args.enforce_stop_conditions
    assert args.max_completion_length == 48 + 128  # the Dr. GRPO budget, a plain config value
    assert not args.train_on_autonomous_close and args.judge_failure_patience == 3
    custom = ThinkingGRPOConfig(
        output_dir="unused",
        bf16=False,
        use_cpu=True,
        per_device_train_batch_size=16,
        max_completion_length=100,
    )
    assert custom.max_completion_length == 100
    with pytest.raises(ValueError, match="split evenly"):
        ThinkingGRPOConfig(output_dir="unused", bf16=False, use_cpu=True, per_device_train_batch_size=12)
    with pytest.raises(ValueError, match="boundary_text"):
        ThinkingGRPOConfig(output_dir="unused", bf16=False, use_cpu=True, boundary_text="\n")


def test_trl_contract():
    """The TRL 1.16 members this trainer relies on (see trl_ext/trainers/grpo.py)."""
    assert "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters
    assert list(inspect.signature(GRPOTrainer._calculate_rewards).parameters) == [
        "self", "inputs", "prompts", "completions", "completion_ids_list",
    ]  # fmt: skip
    assert "env_mask" in inspect.getsource(GRPOTrainer._generate)
    assert "self.max_completion_length" in inspect.getsource(GRPOTrainer._compute_loss)
    assert 'inputs["num_items_in_batch"]' in inspect.getsource(GRPOTrainer._compute_loss)
    assert "self.generation_kwargs = generation_kwargs" in inspect.getsource(GRPOTrainer.__init__)
    assert issubclass(ThinkingGRPOConfig, GRPOConfig) and issubclass(ThinkingGRPOTrainer, GRPOTrainer)
    for name, fld in ThinkingGRPOConfig.__dataclass_fields__.items():
        if name not in GRPOConfig.__dataclass_fields__:
            assert fld.metadata.get("help"), name


def inserted_positions(batch):
    """(row, position in prompt+completion) of each inserted token, and of each sampled token."""
    width = batch["prompt_ids"].shape[1]
    sampled = (batch["completion_mask"] * batch["tool_mask"]).bool()
    inserted = batch["completion_mask"].bool() & ~batch["tool_mask"].bool()
    to_pos = lambda mask: [(r, width + c - 1) for r, c in mask.nonzero().tolist()]  # noqa: E731
    return to_pos(inserted), to_pos(sampled)


def loss_and_grads(trainer, batch, perturb=()):
    """Loss and gradients, with the final hidden state that *predicts* each token at ``perturb``
    replaced by noise — which changes exactly those tokens' logits and nothing else."""
    model = trainer.model
    model.zero_grad()

    def hook(module, args, output):
        output = output.clone()
        for row, pos in perturb:
            output[row, pos] = torch.randn_like(output[row, pos]) * 50
        return output

    handle = model.model.norm.register_forward_hook(hook)
    try:
        loss = trainer.compute_loss(model, batch)
        loss.backward()
    finally:
        handle.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def test_inserted_boundary_tokens_get_zero_weight_in_the_loss(
    tmp_path, tiny_model_dir, tokenizer, rl_dataset
):
    trainer = make_trainer(tmp_path, tiny_model_dir, tokenizer, rl_dataset)
    trainer.model.train()
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(group_inputs(rl_dataset))
    rollouts = trainer._pending_rollouts
    assert batch["tool_mask"].shape == batch["completion_ids"].shape
    for row, r in enumerate(rollouts):
        n = len(r.completion_ids)
        assert batch["completion_ids"][row, :n].tolist() == r.completion_ids
        assert batch["tool_mask"][row, :n].tolist() == r.loss_mask
    inserted, sampled = inserted_positions(batch)
    assert len(inserted) == sum(len(r.boundary_ids) for r in rollouts) > 0
    batch["advantages"] = torch.linspace(-1.0, 1.0, len(rollouts))  # a real signal on every row
    trainer.current_gradient_accumulation_steps = (
        1  # set by Trainer.train's loop; we call compute_loss directly
    )
    trainer.state.global_step = 0

    base_loss, base_grads = loss_and_grads(trainer, batch)
    torch.manual_seed(1)
    loss, grads = loss_and_grads(trainer, batch, perturb=inserted)
    assert torch.equal(loss, base_loss)
    assert all(torch.equal(grads[n], base_grads[n]) for n in base_grads)
    # Control: perturbing one sampled (thought or suffix) position does change the loss.
    torch.manual_seed(1)
    changed, _ = loss_and_grads(trainer, batch, perturb=sampled[:1])
    assert not torch.equal(changed, base_loss)
    # Dr. GRPO's fixed normaliser is the thought + suffix budget, not the longest completion.
    assert trainer.max_completion_length == 4 + 6


class SuffixRecorder:
    """A reward function that records what it is given."""

    __name__ = "suffix_recorder"

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, completion_ids, **kwargs):
        self.calls.append(
            {"prompts": prompts, "completions": completions, "ids": completion_ids, "kwargs": kwargs}
        )
        return [float(sum(ids) % 2) for ids in completion_ids]


def test_reward_functions_receive_exactly_the_suffix_and_files_are_written(
    tmp_path, tiny_model_dir, tokenizer, rl_dataset
):
    recorder = SuffixRecorder()
    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, rl_dataset, reward_funcs=[recorder], max_steps=2,
        generation_kwargs={"sequence_bias": [[[CLOSE], 11.0]]},  # some thoughts closed by the model
    )  # fmt: skip
    seen = []
    original = trainer.rollout_func

    def spy(prompts, tr):
        output = original(prompts, tr)
        seen.append(trainer._pending_rollouts)
        return output

    trainer.rollout_func = spy
    trainer.train()
    assert len(recorder.calls) == 2 and len(seen) == 2
    for call, rollouts in zip(recorder.calls, seen):
        assert call["ids"] == [r.suffix_ids for r in rollouts]
        assert call["completions"] == [r.suffix_text for r in rollouts]
        assert call["completions"] == tokenizer.batch_decode(call["ids"], skip_special_tokens=True)
        for ids, r in zip(call["ids"], rollouts):
            assert r.thought_ids and ids == r.completion_ids[len(r.thought_ids) + len(r.boundary_ids) :]
        assert all(p.endswith(" <think>") for p in call["prompts"])
        assert {"prefix", "reference"} <= call["kwargs"].keys()
        allowed = set(rl_dataset.column_names) | {"trainer_state", "log_extra", "log_metric"}
        assert set(call["kwargs"]) <= allowed  # nothing from the rollout reaches reward functions
    # Per-step samples, metrics and metrics.json with the seed RLMT table columns.
    out = Path(trainer.args.output_dir)
    samples = [json.loads(x) for x in (out / "samples" / "step_0002_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * K and {s["group"] for s in samples} == {0, 1}
    assert {"prompt_id", "thought", "suffix", "reward", "valid", "closed_by_model"} <= samples[0].keys()
    assert [s["reward"] for s in samples] == [float(sum(r.suffix_ids) % 2) for r in seen[1]]
    metrics = json.loads((out / "metrics.json").read_text())
    columns = (
        "avg_reward final_reward avg_mixed_groups avg_near_zero_groups avg_all_zero_groups avg_all_one_groups"
    )
    columns += " invalid_judge avg_length_drift avg_artifact_rate wall_time_s"
    for column in columns.split():
        assert metrics[column] is not None, column
    assert metrics["completed_steps"] == 2 and metrics["stopped_reason"] is None
    logged = [h for h in metrics["history"] if "reward_mean" in h]
    assert len(logged) == 2
    for name in ("reward_std", "invalid_judge_rate", "mixed_group_rate", "near_zero_group_rate",
                 "all_zero_group_rate",
                 "all_one_group_rate", "avg_thought_words", "avg_suffix_words", "avg_total_new_tokens",
                 "length_drift", "artifact_rate", "loss", "kl", "grad_norm", "learning_rate",
                 "tok_per_sec"):  # fmt: skip
        assert name in logged[-1], name
    assert logged[0]["length_drift"] == 0.0
    assert 0 < logged[0]["autonomous_closed_think_rate"] <= 1
    # The policy's own </think> is kept as sampled but gets loss weight 0 by default (docs/method.md §4).
    closed = [r for rollouts in seen for r in rollouts if r.closed_by_model]
    assert closed and all(r.loss_mask[len(r.thought_ids) - 1] == 0 for r in closed)


def test_invalid_verdicts_are_counted_and_incomplete_groups_dropped(
    tmp_path, tiny_model_dir, tokenizer, rl_dataset, fault_server
):
    ok1, ok0 = Fault("ok", text='{"score": 1}'), Fault("ok", text='{"score": 0}')
    url = fault_server([ok1, ok0, ok1, ok0, Fault("ok", text="no verdict here"), ok1, Fault("http500"), ok1])
    judge = LLMJudge(url, max_concurrency=1, max_retries=0, backoff_s=0.0)

    def zero(completions, **kwargs):  # a second reward function that scores every sample
        return [0.0] * len(completions)

    # The judge's verdict record marks its samples invalid even though another function scored them.
    trainer = make_trainer(tmp_path, tiny_model_dir, tokenizer, rl_dataset, reward_funcs=[judge, zero])
    trainer.model.train()
    batch = trainer._generate_and_score_completions(group_inputs(rl_dataset))
    # group 0 complete and mixed; group 1 has two invalid verdicts → dropped from the update
    assert batch["advantages"][:K].tolist() == [0.5, -0.5, 0.5, -0.5]
    assert batch["advantages"][K:].abs().sum() == 0 and batch["tool_mask"][K:].sum() == 0
    assert batch["tool_mask"][:K].sum() > 0
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert logged["invalid_judge_rate"] == pytest.approx(2 / 8)
    assert (
        logged["kept_complete_group_rate"] == 0.5 and logged["mixed_group_rate"] == 0.5
    )  # group 1: [1, 1] valid
    assert logged["reward_mean"] == pytest.approx(4 / 6)
    assert judge.stats.invalid == 2 and judge.stats.reasons == {"unparseable": 1, "call_failed": 1}
    # ...and training goes on with a server that keeps failing some calls.
    trainer.train()
    assert trainer.state.global_step == 1
    samples = [
        json.loads(x) for x in (Path(trainer.args.output_dir) / "samples" / "step_0001_samples.jsonl").open()
    ]
    assert all(s["valid"] == (s["reward"] is not None) for s in samples)


@pytest.mark.slow  # three RL steps; the guard itself is tested fast in tests/test_training_guards.py
def test_non_finite_gradient_norm_stops_before_a_bad_checkpoint(
    tmp_path, tiny_model_dir, tokenizer, rl_dataset
):
    """The reported failure: lr 1e30 with weight decay gives a finite loss but a NaN gradient norm at step 2;
    the optimizer used to write NaN weights into checkpoint-2 and step 3 crashed inside generate."""
    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, rl_dataset, max_steps=3, learning_rate=1e30, weight_decay=0.1,
        warmup_steps=0, save_strategy="steps", save_steps=1,
    )  # fmt: skip
    with pytest.raises(NonFiniteTrainingError, match=r"at step 2 .*Last good checkpoint: .*checkpoint-1"):
        trainer.train()
    out = Path(trainer.args.output_dir)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    weights = load_file(out / "checkpoint-1" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert json.loads((out / "metrics.json").read_text())["stopped_reason"].startswith("non_finite")


def test_enforced_stop_alert_stops_and_saves(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    # A random model's suffixes share no words with the references: every group is all-zero.
    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, rl_dataset, max_steps=5, enforce_stop_conditions=True,
        reward_funcs=[ReferenceOverlapJudge(threshold=1.0)],
    )  # fmt: skip
    trainer.train()
    first_alert = trainer.alerts.history[0]["alerts"][0]
    assert trainer.stop_reason == alert_name(first_alert) and trainer.state.global_step == 1
    assert (Path(trainer.args.output_dir) / "checkpoint-1").exists()
    metrics = json.loads((Path(trainer.args.output_dir) / "metrics.json").read_text())
    assert metrics["stopped_reason"] == trainer.stop_reason and metrics["completed_steps"] == 1


@pytest.mark.slow
def test_resume_continues_step_count_and_rng(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    full = make_trainer(
        tmp_path / "a",
        tiny_model_dir,
        tokenizer,
        rl_dataset,
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
    )
    full.train()
    out_a = Path(full.args.output_dir)
    resumed_dir = tmp_path / "b" / "out"
    resumed_dir.mkdir(parents=True)
    shutil.copytree(out_a / "checkpoint-1", resumed_dir / "checkpoint-1")
    resumed = make_trainer(
        tmp_path / "b",
        tiny_model_dir,
        tokenizer,
        rl_dataset,
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
    )
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 2
    assert not (resumed_dir / "samples" / "step_0001_samples.jsonl").exists()  # step 1 was not redone

    def texts(path):
        return [
            (r["prompt_id"], r["thought"], r["suffix"])
            for r in map(json.loads, path.read_text().splitlines())
        ]

    assert texts(resumed_dir / "samples" / "step_0002_samples.jsonl") == texts(
        out_a / "samples" / "step_0002_samples.jsonl"
    )
    assert resumed.alerts.baseline_new_tokens == full.alerts.baseline_new_tokens  # alert state restored
    history = json.loads((resumed_dir / "metrics.json").read_text())["history"]
    assert sorted({h["step"] for h in history if "reward_mean" in h}) == [1, 2]  # metrics.json spans the run


def test_lora_run(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    from peft import LoraConfig

    trainer = ThinkingGRPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[ReferenceOverlapJudge(threshold=0.02)],
        args=make_args(tmp_path, save_strategy="steps", save_steps=1, learning_rate=1e-3),
        train_dataset=rl_dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    trainer.train()
    assert trainer.state.global_step == 1 and trainer.ref_model is None  # reference = adapter disabled
    assert (Path(trainer.args.output_dir) / "checkpoint-1" / "adapter_model.safetensors").exists()
    history = [h for h in trainer.state.log_history if "kl" in h]
    assert history and math.isfinite(history[-1]["kl"])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_recipe(tmp_path, rl_dataset, accelerate_config, *flags, recipe="rlmt_think_base.py"):
    import os
    import subprocess
    import sys

    from trl_ext.data.rows import write_rows

    repo = Path(__file__).resolve().parents[1]
    rows = tmp_path / "rl_rows.jsonl"
    write_rows(rows, [dict(r) for r in rl_dataset])
    out = tmp_path / "arm"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(repo / "recipes" / "accelerate" / accelerate_config), "--num_processes", "2",
        "--main_process_port", str(free_port()), str(repo / "recipes" / recipe),
        "--model_name_or_path", "embedded", "--judge", "offline", "--offline_threshold", "0.02",
        "--rl_rows", str(rows), "--output_dir", str(out), "--num_generations", str(K),
        "--think_max_tokens", "4",
        "--suffix_max_tokens", "6", "--top_p", "1.0", "--save_steps", "1", "--use_cpu", "true", *flags,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.mark.slow
def test_recipe_two_processes_gloo(tmp_path, rl_dataset):
    out = run_recipe(
        tmp_path, rl_dataset, "cpu_2proc.yaml", "--per_device_train_batch_size", str(K), "--max_steps", "2",
        recipe="rlmt_think_phase3.py",
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["world_size"] == 2
        and metrics["completed_steps"] == 2
        and metrics["arm"] == "think_phase3_rlmt"
    )
    assert metrics["samples_per_step"] == 2 * K  # one group per rank, gathered for the metrics
    samples = (out / "samples" / "step_0002_samples.jsonl").read_text().splitlines()
    assert len(samples) == 2 * K
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "tokenizer.json").exists()


@pytest.mark.slow
def test_recipe_deepspeed_zero2(tmp_path, rl_dataset):
    pytest.importorskip("deepspeed")
    out = run_recipe(
        tmp_path, rl_dataset, "zero2.yaml", "--per_device_train_batch_size", str(K), "--max_steps", "1"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["completed_steps"] == 1
    assert (out / "final" / "model.safetensors").exists()


def test_prompts_get_an_open_think_tag(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    trainer = make_trainer(tmp_path, tiny_model_dir, tokenizer, rl_dataset)
    think = tokenizer.convert_tokens_to_ids("<think>")
    raw = trainer._encode_prompt("The jury said")
    assert tokenizer.decode(raw) == "The jury said <think>"
    assert trainer._encode_prompt("The jury said <think>") == raw  # already open: unchanged
    chat = trainer._encode_prompt([{"role": "user", "content": "Continue: the jury said"}])
    assert chat[-2:] == [think, tokenizer.encode("\n")[0]] and tokenizer.decode(chat).count("<think>") == 1
    with pytest.raises(ValueError, match="own rollout_func"):
        ThinkingGRPOTrainer(model=str(tiny_model_dir), args=make_args(tmp_path), rollout_func=lambda p, t: {})
    with pytest.raises(TypeError, match="ThinkingGRPOConfig"):
        ThinkingGRPOTrainer(model=str(tiny_model_dir), args=GRPOConfig(output_dir=str(tmp_path), bf16=False))


# --------------------------------------------------------------------------------- TRL faithfulness
def test_none_from_one_reward_function_means_does_not_apply(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    """Our version of TRL's ``test_train_multiple_reward_funcs_with_None_output`` (local model and rows):
    one function scores every sample, one returns None ("does not apply"); every parameter must move."""

    def applicable_reward_func(completions, **kwargs):
        return [float(len(completion)) for completion in completions]

    def non_applicable_reward_func(completions, **kwargs):
        return [None] * len(completions)

    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, rl_dataset, learning_rate=0.1, warmup_steps=0,
        reward_funcs=[applicable_reward_func, non_applicable_reward_func],
    )  # fmt: skip
    previous = {n: p.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for name, param in previous.items():
        assert not torch.equal(param, trainer.model.get_parameter(name)), f"{name} has not changed"
    logged = [h for h in trainer.state.log_history if "invalid_judge_rate" in h][-1]
    assert logged["invalid_judge_rate"] == 0.0 and logged["kept_complete_group_rate"] == 1.0


def test_dapo_counts_only_the_loss_tokens_of_kept_groups(
    tmp_path, tiny_model_dir, tokenizer, rl_dataset, fault_server
):
    """dapo/cispo/vespo divide by TRL's ``num_items_in_batch``; after a group is dropped it must be
    recounted, or the kept group's loss (and gradient) is silently scaled down."""
    ok1, ok0 = Fault("ok", text='{"score": 1}'), Fault("ok", text='{"score": 0}')
    url = fault_server([ok1, ok0, ok1, ok0, Fault("http500")])  # group 1 all invalid → dropped
    judge = LLMJudge(url, max_concurrency=1, max_retries=0, backoff_s=0.0)
    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, rl_dataset, reward_funcs=[judge], loss_type="dapo"
    )
    trainer.model.train()
    batch = trainer._generate_and_score_completions(group_inputs(rl_dataset))
    kept_tokens = (batch["completion_mask"] * batch["tool_mask"])[:K].sum()
    assert batch["tool_mask"][K:].sum() == 0 and batch["num_items_in_batch"] == kept_tokens > 0
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train's loop
    alone = {k: v[:K] if torch.is_tensor(v) and v.dim() else v for k, v in batch.items()}
    alone["num_items_in_batch"] = kept_tokens  # the kept group as its own batch
    _, full = loss_and_grads(trainer, batch)
    _, kept_only = loss_and_grads(trainer, alone)
    assert sum(g.norm() for g in full.values()) > 0
    for name, grad in full.items():  # the dropped group changes nothing, not even the scale
        assert torch.allclose(grad, kept_only[name], rtol=1e-4, atol=1e-9), name


def test_trl_generation_settings_reach_both_rollout_stages(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, rl_dataset, cache_implementation="static", top_k=7, min_p=0.01,
        repetition_penalty=1.3, temperature=0.9, generation_kwargs={"no_repeat_ngram_size": 3},
    )  # fmt: skip
    calls, generate = [], trainer.model.generate

    def spy(*args, **kwargs):  # records the call, then runs the real generate
        calls.append(kwargs)
        return generate(*args, **kwargs)

    trainer.model.generate = spy
    trainer.model.train()
    trainer._generate_and_score_completions(group_inputs(rl_dataset))
    expected = {"cache_implementation": "static", "top_k": 7, "min_p": 0.01, "repetition_penalty": 1.3,
                "temperature": 0.9, "no_repeat_ngram_size": 3, "do_sample": True}  # fmt: skip
    assert len(calls) == 2
    for call in calls:
        assert {k: call.get(k) for k in expected} == expected
    assert [c["max_new_tokens"] for c in calls] == [4, 6]


# ---------------------------------------------------------------------------------------- precision
def test_bf16_autocast_trains_fp32_weights(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    """fp32 weights + ``bf16=True`` (autocast compute): one step at the METHOD learning rate 1e-7 moves almost
    every weight, weights and AdamW state stay fp32, and the reference model runs under the same autocast as
    the policy (KL exactly 0 at the first step, where policy == reference)."""

    def even_share(completion_ids, **kwargs):  # a reward with signal in every group
        return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, rl_dataset, model=model, reward_funcs=[even_share], bf16=True,
        learning_rate=1e-7, warmup_steps=0, beta=0.02,
    )  # fmt: skip
    assert trainer.accelerator.mixed_precision == "bf16" and trainer.ref_model is not None
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = total = 0
    for name, param in trainer.model.named_parameters():
        assert param.dtype == torch.float32, name
        changed += (param.detach() != before[name]).sum().item()
        total += param.numel()
    assert changed / total > 0.95, changed / total
    states = [s for s in trainer.optimizer.state.values() if s]
    assert states and all(t.dtype == torch.float32 for s in states for k, t in s.items() if k != "step")
    logged = [h for h in trainer.state.log_history if "kl" in h][-1]
    assert logged["kl"] == 0.0


def test_low_precision_trainable_weights_are_refused(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"torch.bfloat16.*Load the model in float32"):
        make_trainer(tmp_path, tiny_model_dir, tokenizer, rl_dataset, model=model, bf16=True)


# ----------------------------------------------------------------------------------- judge failures
def test_dead_judge_url_fails_before_training(tmp_path, tiny_model_dir, tokenizer, rl_dataset):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    judge = LLMJudge(url, max_retries=0)
    trainer = make_trainer(tmp_path, tiny_model_dir, tokenizer, rl_dataset, reward_funcs=[judge],
                           judge_ready_timeout_s=1)  # fmt: skip
    with pytest.raises(JudgeUnavailableError, match=rf"not ready: .*{url}"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_judge_failure_patience_stops_with_a_checkpoint_and_missing_rewards(
    tmp_path, tiny_model_dir, tokenizer, rl_dataset, fault_server
):
    """A judge that answers /v1/models but fails every call: the steps have no reward (missing, not 0),
    and after ``judge_failure_patience`` of them the run stops with a checkpoint and an error."""
    judge = LLMJudge(fault_server([Fault("http500")]), max_retries=0, backoff_s=0.0)
    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, rl_dataset, reward_funcs=[judge], max_steps=5,
        judge_failure_patience=2,
    )  # fmt: skip
    with pytest.raises(JudgeUnavailableError, match=r"no valid judge verdict in 2 consecutive steps"):
        trainer.train()
    out = Path(trainer.args.output_dir)
    assert trainer.state.global_step == 2 and (out / "checkpoint-2" / "model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_reason"] == "judge_failure" and metrics["missing_reward_steps"] == 2
    steps = [h for h in metrics["history"] if "invalid_judge_rate" in h]
    assert len(steps) == 2 and not any("reward_mean" in h for h in steps)  # missing, not 0.0
    assert metrics["avg_reward"] is None and metrics["invalid_judge"] == 1.0
    stats = json.loads((out / "judge_stats.json").read_text())  # persisted with the checkpoint
    assert stats["global_step"] == 2 and stats["judges"]["llm_judge"]["invalid"] == 2 * 2 * K


def test_run_state_round_trips_through_a_checkpoint():
    """Alert baselines and the missing-reward count are restored whether transformers rebuilds the
    callback from its saved args or the live one reads its own saved state."""
    from transformers import TrainerControl, TrainerState

    state = RLMTRunState({"collapse_steps": 3})
    state.tracker.length_drift(12.0)
    state.tracker.collapse_streak, state.missing_reward_steps = 2, 1
    state.stop("judge_failure", "x")
    saved = json.loads(json.dumps(state.state()))  # as written into trainer_state.json
    rebuilt = RLMTRunState(**saved["args"])  # Trainer._load_callback_state
    for name, value in saved["attributes"].items():
        setattr(rebuilt, name, value)
    live = RLMTRunState({"collapse_steps": 3})
    trainer_state = TrainerState(global_step=5, stateful_callbacks={"RLMTRunState": saved})
    live.on_train_begin(None, trainer_state, TrainerControl())
    for restored in (rebuilt, live):
        assert restored.tracker.baseline_new_tokens == 12.0 and restored.tracker.collapse_streak == 2
        assert restored.missing_reward_steps == 1 and restored.tracker.thresholds.collapse_steps == 3
        assert restored.stop_reason is None  # a resume is a deliberate restart


# ------------------------------------------------------------------------------------------ learning
@pytest.mark.slow
def test_mean_reward_rises_with_a_learnable_reward(tmp_path, tiny_model_dir, tokenizer):
    """The trainer learns: with the share of even token ids in the suffix as the reward, the mean reward
    of the last steps is clearly above the first step's. The tiny model is random (near-uniform over
    152k tokens), so sampling is restricted to its top 8 tokens, among which evenness can be learned."""

    def even_share(completion_ids, **kwargs):
        return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]

    dataset = Dataset.from_list([{"id": str(i), "prompt": f"Story {i}: the river was"} for i in range(16)])
    trainer = make_trainer(
        tmp_path, tiny_model_dir, tokenizer, dataset, reward_funcs=[even_share], max_steps=LEARN_STEPS,
        think_max_tokens=1, suffix_max_tokens=4, top_k=8, beta=0.0, learning_rate=LEARN_LR, max_grad_norm=1.0,
        warmup_steps=0, lr_scheduler_type="constant", log_rollout_samples=False, seed=3,
    )  # fmt: skip
    trainer.train()
    rewards = [h["reward_mean"] for h in trainer.state.log_history if "reward_mean" in h]
    assert len(rewards) == LEARN_STEPS
    last = sum(rewards[-4:]) / 4  # an untrained policy scores about 0.5
    assert last > 0.85 and last > rewards[0] + 0.15, rewards
