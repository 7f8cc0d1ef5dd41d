"""Shared callbacks on a real transformers Trainer with the tiny Qwen3 model."""

import json

from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

from trl_ext.callbacks import MetricsJsonCallback, ThroughputMemoryCallback, column_last, column_mean


def test_metrics_json_and_throughput_on_a_real_trainer(tiny_model_dir, tmp_path):
    import torch

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.randint(0, 1000, (4, 16))
    dataset = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
        report_to=[], use_cpu=True, save_strategy="no", include_num_input_tokens_seen="all",
    )  # fmt: skip
    summary = {"final_loss": column_last("loss"), "avg_tok_per_sec": column_mean("tok_per_sec"),
               "never_logged": column_mean("nope")}  # fmt: skip
    callbacks = [ThroughputMemoryCallback(), MetricsJsonCallback(tmp_path, summary, extra={"arm": "test"})]
    Trainer(model=model, args=args, train_dataset=dataset, callbacks=callbacks).train()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["finished"] and metrics["completed_steps"] == 2 and metrics["arm"] == "test"
    steps = [r for r in metrics["history"] if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert [r["tokens_seen"] for r in steps] == [32, 64]  # 2 sequences x 16 tokens per step
    assert metrics["final_loss"] == steps[-1]["loss"] and metrics["never_logged"] is None
    assert (
        metrics["avg_tok_per_sec"] > 0
        and 0 < steps[-1]["min_available_mem_gib"] <= steps[0]["available_mem_gib"]
    )


def test_metrics_json_spans_the_whole_run_after_a_resume(tiny_model_dir, tmp_path):
    import torch

    ids = torch.randint(0, 1000, (4, 16), generator=torch.Generator().manual_seed(0))
    dataset = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
        report_to=[], use_cpu=True, save_strategy="steps", save_steps=1,
    )  # fmt: skip

    def run(resume):
        callback = MetricsJsonCallback(tmp_path, {"final_loss": column_last("loss")})
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback]).train(
            resume_from_checkpoint=resume
        )
        return json.loads((tmp_path / "metrics.json").read_text())

    first = run(None)
    resumed = run(str(tmp_path / "checkpoint-1"))  # redoes step 2 only
    assert [r["step"] for r in resumed["history"] if "loss" in r] == [1, 2]
    assert [r["loss"] for r in resumed["history"] if "loss" in r][0] == first["history"][0]["loss"]
