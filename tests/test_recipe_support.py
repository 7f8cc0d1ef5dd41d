"""The shared recipe layer without training: batch arithmetic, layered configs, model names, launch files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from trl_ext.batch_plan import BatchPlanError, plan_batch
from trl_ext.recipe_support import ConfigError, parse_layered, resolve_model

CONFIGS = REPO_ROOT / "recipes" / "configs"
LAUNCH = REPO_ROOT / "recipes" / "accelerate"


def _split(plan) -> tuple[int, int]:
    return plan.per_device_train_batch_size, plan.gradient_accumulation_steps


# ------------------------------------------------------------------------------------------ batch plan
@pytest.mark.parametrize(
    ("world", "rlmt", "phase3_or_sft"),
    [(1, (16, 2), (4, 4)), (2, (16, 1), (4, 2)), (8, (4, 1), (2, 1)), (16, (2, 1), (1, 1))],
)
def test_reference_steps_hold_on_every_world_size(world, rlmt, phase3_or_sft):
    """RLMT 2 prefixes × 16 samples (cap 16), phase3 16 prefixes and SFT 16 sequences (cap 4)."""
    rl = plan_batch(step_value=2, multiplier=16, world_size=world, max_per_device=16, unit="samples",
                    step_flag="--prefixes_per_step")  # fmt: skip
    assert (
        _split(rl) == rlmt and world * rl.per_device_train_batch_size * rl.gradient_accumulation_steps == 32
    )
    p3 = plan_batch(step_value=16, world_size=world, max_per_device=4, unit="prefixes", step_flag="--p")
    assert _split(p3) == phase3_or_sft and p3.units_per_step == 16 and p3.source == "derived"


def test_a_step_that_cannot_split_names_the_flags():
    with pytest.raises(BatchPlanError) as err:
        plan_batch(
            step_value=16, world_size=3, max_per_device=4, unit="prefixes", step_flag="--prefixes_per_step"
        )
    message = str(err.value)
    assert "--prefixes_per_step 15 or --prefixes_per_step 18" in message
    assert "--num_processes in {1, 2, 4, 8, 16}" in message
    with pytest.raises(BatchPlanError, match="--prefixes_per_step 32"):  # 16 prefixes over 32 processes
        plan_batch(
            step_value=16, world_size=32, max_per_device=4, unit="prefixes", step_flag="--prefixes_per_step"
        )
    # RLMT counts samples: 2 × 16 = 32 split over 64 processes needs 4 prefixes
    with pytest.raises(BatchPlanError, match="--prefixes_per_step 4"):
        plan_batch(step_value=2, multiplier=16, world_size=64, max_per_device=16, unit="samples",
                   step_flag="--prefixes_per_step")  # fmt: skip


def test_explicit_batch_flags():
    # a per-device batch that does not divide the per-process share: the error lists splits that work
    with pytest.raises(BatchPlanError) as err:
        plan_batch(step_value=2, multiplier=16, world_size=8, max_per_device=16, per_device=16,
                   unit="samples", step_flag="--prefixes_per_step")  # fmt: skip
    assert "--per_device_train_batch_size 4 --gradient_accumulation_steps 1" in str(err.value)
    # an explicit per-device batch that fits is kept; accumulation follows
    plan = plan_batch(
        step_value=16, world_size=2, max_per_device=4, per_device=2, unit="prefixes", step_flag="--p"
    )
    assert _split(plan) == (2, 4)
    # both given (and the step not): they define the step, as the CPU demo does
    plan = plan_batch(step_value=16, world_size=1, max_per_device=4, per_device=1, grad_accum=2,
                      unit="prefixes", step_flag="--p")  # fmt: skip
    assert (plan.units_per_step, plan.source) == (2, "explicit")
    # both given and the step given too: they must agree
    with pytest.raises(BatchPlanError):
        plan_batch(step_value=16, world_size=1, max_per_device=4, per_device=1, grad_accum=2, unit="prefixes",
                   step_flag="--p", step_explicit=True)  # fmt: skip


# ------------------------------------------------------------------------------------------ layered configs
def _parse_phase3(argv: list[str]):
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    from phase3_online_dpo import BATCH, DEFAULT_CONFIG, Phase3Arguments

    from trl_ext.trainers.online_dpo import SelfImprovingOnlineDPOConfig

    return parse_layered((Phase3Arguments, SelfImprovingOnlineDPOConfig), DEFAULT_CONFIG, argv, batch=BATCH)


def test_a_user_yaml_layers_on_the_arm_yaml(tmp_path):
    """A 2-line user YAML changes two fields; output_dir, the start model and the arm stay the arm's."""
    user = tmp_path / "user.yaml"
    user.write_text("max_steps: 7\nlearning_rate: 1.0e-6\n")
    arm = yaml.safe_load((CONFIGS / "phase3_online_dpo.yaml").read_text())
    (script, args), plan = _parse_phase3(["--config", str(user), "--learning_rate", "2e-6"])
    assert (script.arm, script.model_name_or_path, args.output_dir) == (
        arm["arm"], arm["model_name_or_path"], arm["output_dir"],
    )  # fmt: skip
    assert args.max_steps == 7 and args.learning_rate == 2e-6  # user YAML over arm YAML, flags over both
    assert args.beta == arm["beta"] and args.num_rollouts == arm["num_rollouts"]
    # the reference step: 16 prefixes = 4 per device × 4 accumulation on one process
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 4)
    assert plan.units_per_step == 16 and plan.world_size == 1


def test_config_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_stepz: 7\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown field\(s\) \['max_stepz'\]"):
        _parse_phase3(["--config", str(bad)])
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml: must hold a YAML mapping"):
        _parse_phase3(["--config", str(bad)])


def test_help_says_how_configs_layer(capsys):
    with pytest.raises(SystemExit) as done:
        _parse_phase3(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the arm's YAML" in text and "always read" in text and "command-line flags, which win" in text
    assert "--config FILE" in text and "--prefixes_per_step" in text


# ------------------------------------------------------------------------------------------ model names
def test_model_names(tmp_path, embedded, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no outputs/ of a demo run here
    assert resolve_model("embedded") == str(embedded.model_dir)
    assert Path(resolve_model("embedded:tiny")) == Path(embedded.model_dir)
    with pytest.raises(SystemExit, match="embedded:bogus: unknown embedded model 'bogus'"):
        resolve_model("embedded:bogus")
    assert resolve_model("Qwen/Qwen3-0.6B-Base") == "Qwen/Qwen3-0.6B-Base"  # a Hub id is passed on
    with pytest.raises(
        ConfigError, match=r"outputs/phase3/final: no model .*run recipes/phase3_online_dpo\.py"
    ):
        resolve_model("outputs/phase3/final", CONFIGS)
    with pytest.raises(ConfigError, match=r"run recipes/sft_think_base\.py first"):
        resolve_model("outputs/think_base/final", CONFIGS)
    with pytest.raises(ConfigError, match="required"):
        resolve_model(None)


# ------------------------------------------------------------------------------------------ launch configs
def test_launch_configs_parse_and_match_the_hardware_they_name():
    from accelerate.commands.config.config_args import ClusterConfig

    configs = {p.name: ClusterConfig.from_yaml_file(str(p)) for p in sorted(LAUNCH.glob("*.yaml"))}
    expected = {  # file → (machines, processes, distributed type)
        "cpu_single.yaml": (1, 1, "NO"), "cpu_2proc.yaml": (1, 2, "MULTI_GPU"),
        "cpu_zero2.yaml": (1, 2, "DEEPSPEED"),
        "single_gpu.yaml": (1, 1, "NO"), "zero2.yaml": (1, 8, "DEEPSPEED"), "zero3.yaml": (1, 8, "DEEPSPEED"),
        "multinode_2x8_zero2.yaml": (2, 16, "DEEPSPEED"),
    }  # fmt: skip
    assert set(configs) == set(expected)
    for name, config in configs.items():
        got = (config.num_machines, config.num_processes, str(config.distributed_type).split(".")[-1])
        assert got == expected[name], name
        ds = config.deepspeed_config or {}
        if ds:
            json_path = REPO_ROOT / ds["deepspeed_config_file"]
            stage = json.loads(json_path.read_text())["zero_optimization"]["stage"]
            assert stage == (3 if name == "zero3.yaml" else 2), name
            assert ds["zero3_init_flag"] is (stage == 3), name
    zero3 = json.loads((LAUNCH / "ds_zero3.json").read_text())
    assert zero3["bf16"] == {"enabled": "auto"} and zero3["fp16"] == {"enabled": "auto"}
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    for key in (
        "gradient_accumulation_steps",
        "gradient_clipping",
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
    ):
        assert zero3[key] == "auto", key  # taken from the recipe's training config
    assert configs["multinode_2x8_zero2.yaml"].deepspeed_config["deepspeed_multinode_launcher"] == "standard"


def test_arm_yamls_fix_the_step_not_the_split():
    """Every arm YAML names its global step; none pins the per-device split (that follows the world size)."""
    steps = {"phase3_online_dpo": ("prefixes_per_step", 16), "rlmt_think_base": ("prefixes_per_step", 2),
             "rlmt_think_phase3": ("prefixes_per_step", 2), "sft_think_base": ("sequences_per_step", 16),
             "sft_think_phase3": ("sequences_per_step", 16),
             "sft_raw_base": ("sequences_per_step", 16)}  # fmt: skip
    for name, (key, value) in steps.items():
        config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert config[key] == value, name
        assert "per_device_train_batch_size" not in config and "gradient_accumulation_steps" not in config, (
            name
        )
        assert config["export_dtype"] == "float32", name
