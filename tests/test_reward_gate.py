"""Reward gate (docs/method.md §5): aggregation against hand-computed cases, then the real command on the
tiny embedded model (two-stage rollout, offline and LLM judges, resume, re-judging, bad input)."""

from __future__ import annotations

import json
import math

import pytest
from conftest import Fault
from gate_helpers import read_jsonl, write_thinking_rows

from eval import reward_gate
from eval.reward_gate import (
    compare_arms,
    compare_prefix_means,
    go_no_go,
    pick_phase3_base,
    prefix_mean_rewards,
    summarize_arm,
)
from eval.thought_rollouts import SampleStore, json_ready, load_prompt_rows
from trl_ext.data.rows import RowFileError, write_rows

METHOD_FIELDS = [
    "reward_mean", "reward_std", "invalid_rate", "mixed_group_rate", "near_zero_group_rate",
    "any_success_group_rate", "all_success_group_rate", "avg_total_new_tokens",
    "avg_predicted_suffix_words", "closed_think_rate", "autonomous_closed_think_rate",
]  # fmt: skip
CLOSE_ID = 151668


def rec(prefix, score, *, new_tokens=10, closed=False, thought="a", suffix="x y z", thought_closed=True):
    return {
        "prefix_id": prefix, "score": score, "new_tokens": new_tokens, "closed_by_model": closed,
        "thought_closed": thought_closed, "thought": thought, "suffix": suffix,
    }  # fmt: skip


def test_summarize_arm_hand_computed():
    records = [
        rec("p1", 1.0, new_tokens=30, closed=True, thought="one two three"),
        rec("p1", 0.0, closed=True, thought="one two three"),
        rec("p1", 1.0),
        rec("p1", None),
        rec("p2", 0.0, closed=True, thought="one two three"),
        *[rec("p2", 0.0) for _ in range(3)],
        *[rec("p3", None) for _ in range(4)],
    ]
    s = summarize_arm(records)
    expected = {
        "reward_mean": 2 / 7,
        "reward_std": math.sqrt(10) / 7,  # population std of five 0s and two 1s
        "invalid_rate": 5 / 12,
        "mixed_group_rate": 1 / 3,  # p1 only
        "near_zero_group_rate": 1 / 3,  # p2 (4 valid, std 0); p3 has no valid score
        "any_success_group_rate": 1 / 3,
        "all_success_group_rate": 0.0,
        "avg_total_new_tokens": 140 / 12,
        "avg_predicted_suffix_words": 3.0,
        "closed_think_rate": 1.0,
        "autonomous_closed_think_rate": 0.25,
        "num_records": 12, "valid": 7, "invalid": 5, "reward_min": 0.0, "reward_max": 1.0,
        "num_groups": 3, "num_scored_groups": 2,
        "mean_group_reward": (2 / 3 + 0) / 2,
        "mean_group_std": (math.sqrt(2) / 3 + 0) / 2,
        "mean_group_range": 0.5,
        "avg_thought_words": 18 / 12,
        "avg_thought_words_when_closed": 3.0,
        "artifact_rate": 0.0,
    }  # fmt: skip
    assert set(METHOD_FIELDS) <= set(s)
    for key, value in expected.items():
        assert s[key] == pytest.approx(value), key
    assert prefix_mean_rewards(records) == pytest.approx({"p1": 2 / 3, "p2": 0.0})


def test_single_valid_success_is_all_success_but_not_near_zero():
    s = summarize_arm([rec("p", 1.0), rec("p", None), rec("q", 1.0), rec("q", 1.0)])
    assert s["all_success_group_rate"] == 1.0 and s["any_success_group_rate"] == 1.0
    assert s["near_zero_group_rate"] == 0.5  # q has 2 valid equal scores; p only one valid score
    assert s["mixed_group_rate"] == 0.0
    assert s["closed_think_rate"] == 1.0 and s["autonomous_closed_think_rate"] == 0.0
    assert math.isnan(s["avg_thought_words_when_closed"])


def test_compare_prefix_means_hand_computed():
    left = {"p1": 0.5, "p2": 0.0, "p3": 1.0}
    right = {"p1": 0.75, "p2": 0.0, "p4": 1.0, "p5": 0.0}
    c = compare_prefix_means(left, right)
    assert c["shared_prefixes"] == 2
    assert c["mean_reward_delta"] == pytest.approx(0.125)
    assert c["right_better_prefix_rate"] == 0.5 and c["left_better_prefix_rate"] == 0.0
    assert c["tie_prefix_rate"] == 0.5
    empty = compare_prefix_means({"a": 1.0}, {"b": 1.0})
    assert empty["shared_prefixes"] == 0 and math.isnan(empty["mean_reward_delta"])


def test_compare_arms_keys_follow_the_seed_order():
    means = {
        arm: {"p": 0.0} for arm in ["think_phase3_rlmt", "think_base", "think_phase3", "think_base_rlmt"]
    }
    assert list(compare_arms(means)) == [
        "think_base_rlmt_minus_think_base",
        "think_phase3_minus_think_base",
        "think_phase3_rlmt_minus_think_base",
        "think_phase3_minus_think_base_rlmt",
        "think_phase3_rlmt_minus_think_base_rlmt",
        "think_phase3_rlmt_minus_think_phase3",
    ]  # the order of the reference run's reward-gate comparison table
    means["think_base"] = {"p": 0.25}
    assert compare_arms(means)["think_phase3_minus_think_base"]["mean_reward_delta"] == pytest.approx(-0.25)


def _summary(invalid=0.0, near_zero=0.4, std=0.2, mixed=0.5):
    return {
        "invalid_rate": invalid,
        "near_zero_group_rate": near_zero,
        "mean_group_std": std,
        "mixed_group_rate": mixed,
    }


def test_go_no_go_fields():
    means = {"think_base": {"p1": 0.5, "p2": 0.0}, "think_phase3": {"p1": 0.25, "p2": 0.5}}
    summaries = {"think_base": _summary(std=0.3, mixed=0.4), "think_phase3": _summary(std=0.2, mixed=0.5)}
    fields, headline = go_no_go(summaries, means, ("think_phase3", "think_base"))
    assert fields == {
        "reward_validity_ok": True,
        "variance_ok": True,
        "phase3_more_reward_separable": True,  # lower group std, but a higher mixed-group rate
        "phase3_higher_mean_reward": True,  # (−0.25 + 0.5) / 2 > 0
    }
    assert headline["mean_phase3_minus_base_reward"] == pytest.approx(0.125)
    assert headline["phase3_better_prefix_rate"] == 0.5 and headline["base_better_prefix_rate"] == 0.5

    summaries["think_phase3"] = _summary(invalid=0.06, near_zero=0.5, std=0.1, mixed=0.4)  # 0.5 is still ok
    means["think_phase3"] = {"p1": 0.5, "p2": 0.0}
    fields, headline = go_no_go(summaries, means, ("think_phase3", "think_base"))
    assert fields["reward_validity_ok"] is False and fields["variance_ok"] is True
    assert fields["phase3_more_reward_separable"] is False and fields["phase3_higher_mean_reward"] is False
    assert headline["tie_prefix_rate"] == 1.0

    summaries["think_base"] = _summary(near_zero=0.51)
    fields, headline = go_no_go(summaries, means, None)
    assert fields["variance_ok"] is False
    assert fields["phase3_more_reward_separable"] is None and fields["phase3_higher_mean_reward"] is None
    assert headline == {}


def test_pick_phase3_base():
    assert pick_phase3_base(["think_base", "think_phase3", "phase3", "base"]) == (
        "think_phase3",
        "think_base",
    )
    assert pick_phase3_base(["base", "phase3"]) == ("phase3", "base")
    assert pick_phase3_base(["think_base", "think_base_rlmt"]) is None
    assert pick_phase3_base(["x", "y"], "y", "x") == ("y", "x")
    with pytest.raises(SystemExit, match="not among"):
        pick_phase3_base(["x", "y"], "z", "x")
    with pytest.raises(SystemExit, match="both"):
        pick_phase3_base(["x", "y"], "y")


# ----------------------------------------------------------------------------------- the command


def _gate_args(tmp_path, rows, arms, *extra):
    # top_p 1.0: HF's top-p warper sorts the 152k-entry vocabulary every step, the bulk of CPU time.
    return [
        "--arms", *arms, "--rows", str(rows), "--out", str(tmp_path / "gate"), "--num-prefixes", "3",
        "--samples", "2", "--think-max-tokens", "6", "--suffix-max-tokens", "8", "--batch-prefixes", "2",
        "--top-p", "1.0", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture
def heldout_rows(tmp_path, embedded):
    return write_thinking_rows(embedded.corpus_path, tmp_path / "heldout.jsonl", 5)


def _check_rollout_rows(rows, think_max, suffix_max):
    for row in rows:
        assert 0 < len(row["thought_ids"]) <= think_max and len(row["suffix_ids"]) <= suffix_max
        assert row["boundary_ids"] == ([] if row["closed_by_model"] else [CLOSE_ID])
        assert row["closed_by_model"] == (row["thought_ids"][-1] == CLOSE_ID)
        assert row["new_tokens"] == len(row["thought_ids"]) + len(row["suffix_ids"])
        assert row["thought_closed"] is True


def test_reward_gate_end_to_end_resume_and_config_guard(tmp_path, heldout_rows, tiny_model_dir):
    arms = [f"think_base={tiny_model_dir}", f"think_phase3={tiny_model_dir}"]
    args = _gate_args(tmp_path, heldout_rows, arms, "--offline-threshold", "0.05")
    assert reward_gate.main(args) == 0
    out = tmp_path / "gate"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["config"]["judge"]["kind"] == "offline"
    assert list(summary["comparisons"]) == ["think_phase3_minus_think_base"]
    assert "| think_phase3_minus_think_base |" in (out / "summary.md").read_text()
    assert (out / "reward_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["headline"]["phase3_arm"] == "think_phase3" and summary["headline"]["shared_prefixes"] == 3
    assert set(summary["go_no_go"]) == {
        "reward_validity_ok", "variance_ok", "phase3_more_reward_separable", "phase3_higher_mean_reward",
    }  # fmt: skip
    assert all(isinstance(v, bool) for v in summary["go_no_go"].values())
    for arm in ("think_base", "think_phase3"):
        rows = read_jsonl(out / f"{arm}.samples.jsonl")
        assert len(rows) == 6 and len({(r["prefix_id"], r["sample_idx"]) for r in rows}) == 6
        assert {r["prefix_id"] for r in rows} == set(summary["prefix_ids"])
        _check_rollout_rows(rows, 6, 8)
        recomputed = json_ready(summarize_arm(rows))
        assert summary["arms"][arm] == pytest.approx(recomputed)  # every number comes from the rows
        assert summary["arms"][arm]["closed_think_rate"] == 1.0

    # Kill mid-run: three complete rows and a torn fourth line survive. Resume regenerates exactly the rest.
    path = out / "think_base.samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:40])
    assert reward_gate.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["think_base"]["resumed"] == 3 and summary["run"]["think_base"]["generated"] == 3
    assert summary["run"]["think_phase3"]["generated"] == 0
    resumed = read_jsonl(path)
    assert resumed[:3] == [json.loads(line) for line in lines[:3]]
    assert len(resumed) == 6 and len({(r["prefix_id"], r["sample_idx"]) for r in resumed}) == 6

    with pytest.raises(SystemExit, match="suffix_max_tokens: stored 8, now 9"):
        reward_gate.main(_gate_args(tmp_path, heldout_rows, arms, "--suffix-max-tokens", "9"))
    assert reward_gate.main([*args, "--summary-only"]) == 0


def test_llm_judge_sees_no_thought_and_unparseable_replies_are_invalid(
    tmp_path, heldout_rows, tiny_model_dir, fault_server
):
    url = fault_server([Fault("ok", text='{"score": 1}'), Fault("ok", text="The continuation looks fine.")])
    args = _gate_args(tmp_path, heldout_rows, [f"m={tiny_model_dir}"], "--judge-base-url", url)
    assert reward_gate.main(args) == 0
    summary = json.loads((tmp_path / "gate" / "summary.json").read_text())
    arm = summary["arms"]["m"]
    assert (arm["valid"], arm["invalid"], arm["invalid_rate"], arm["reward_mean"]) == (1, 5, 5 / 6, 1.0)
    assert summary["go_no_go"]["reward_validity_ok"] is False
    assert summary["judge_stats"]["invalid_reasons"] == {"unparseable": 5}
    rows = read_jsonl(tmp_path / "gate" / "m.samples.jsonl")
    assert sorted(r["score"] is None for r in rows) == [False] + [True] * 5
    assert all(r["judge_raw"] == "The continuation looks fine." for r in rows if r["score"] is None)
    requests = [json.dumps(body["messages"], ensure_ascii=False) for body in fault_server.servers[0].requests]
    assert len(requests) == 6
    for row in rows:
        # The judge gets prefix, reference and suffix; the thought never leaves the process.
        assert sum(json.dumps(row["suffix"], ensure_ascii=False)[1:-1] in r for r in requests) >= 1
        if len(row["thought"]) >= 6:
            assert not any(json.dumps(row["thought"], ensure_ascii=False)[1:-1] in r for r in requests)


def test_failed_judge_calls_are_rejudged_without_regenerating(
    tmp_path, heldout_rows, tiny_model_dir, fault_server
):
    down = fault_server([Fault("http500")])
    args = _gate_args(tmp_path, heldout_rows, [f"m={tiny_model_dir}"], "--judge-retries", "0")
    assert reward_gate.main([*args, "--judge-base-url", down]) == 0
    path = tmp_path / "gate" / "m.samples.jsonl"
    first = read_jsonl(path)
    assert all(r["score"] is None and r["judge_error"].startswith("call_failed") for r in first)
    summary = json.loads((tmp_path / "gate" / "summary.json").read_text())
    assert summary["arms"]["m"]["invalid_rate"] == 1.0 and summary["arms"]["m"]["reward_mean"] is None

    up = fault_server([Fault("ok", text='{"score": 0}'), Fault("ok", text='{"score": 1}')])
    assert reward_gate.main([*args, "--judge-base-url", up, "--rejudge-failed"]) == 0
    summary = json.loads((tmp_path / "gate" / "summary.json").read_text())
    assert summary["run"]["m"]["rejudged"] == 6 and summary["run"]["m"]["generated"] == 0
    assert summary["arms"]["m"]["invalid_rate"] == 0.0 and summary["arms"]["m"][
        "reward_mean"
    ] == pytest.approx(5 / 6)
    latest = SampleStore(path).rows
    assert len(read_jsonl(path)) == 12 and len(latest) == 6  # appended; the last row of a key wins
    by_key = {(r["prefix_id"], r["sample_idx"]): r for r in first}
    for (_, prefix_id, k), row in latest.items():
        assert row["suffix_ids"] == by_key[(prefix_id, k)]["suffix_ids"]  # same generation, new verdict


def test_bad_rows_name_file_line_and_field(tmp_path, qwen_tokenizer):
    path = tmp_path / "rl.jsonl"
    good = {"id": "a", "prompt": "text <think>", "prefix": "text", "reference": "more"}
    write_rows(path, [good, {"id": "b", "prompt": "x <think>", "prefix": "x"}])
    with pytest.raises(RowFileError, match=r"rl\.jsonl:2: field 'reference'"):
        load_prompt_rows(path, qwen_tokenizer)
    write_rows(path, [good, {**good}])
    with pytest.raises(RowFileError, match="duplicate id 'a'"):
        load_prompt_rows(path, qwen_tokenizer)
    write_rows(path, [{**good, "prompt": "no open tag"}])
    with pytest.raises(RowFileError, match="field 'prompt'.*open ' <think>'"):
        load_prompt_rows(path, qwen_tokenizer)
    write_rows(path, [{"id": "a", "body": "?"}])
    with pytest.raises(RowFileError, match="neither an RL row"):
        load_prompt_rows(path, qwen_tokenizer)


def test_unknown_arm_and_bad_flags(tmp_path, heldout_rows):
    from eval.arms import ArmError

    with pytest.raises(ArmError, match="no model for arm 'think_base'"):
        reward_gate.main(
            ["--arms", "think_base", "--outputs", str(tmp_path / "none"), "--rows", str(heldout_rows)]
        )
    with pytest.raises(SystemExit, match="--samples must be"):
        reward_gate.main(["--arms", "x=/nowhere", "--samples", "0"])


@pytest.mark.slow
def test_reward_gate_with_a_real_llm_judge_server(tmp_path, heldout_rows, tiny_model_dir, openai_server):
    """The real transport path: a `transformers serve` judge. The tiny random judge cannot produce
    the strict ``{"score": 0|1}`` reply within 8 tokens, so every verdict must come back invalid (cut by
    the token limit: ``truncated``), none defaulted."""
    args = _gate_args(tmp_path, heldout_rows, [f"m={tiny_model_dir}"], "--judge-base-url", openai_server,
                      "--judge-max-tokens", "8")  # fmt: skip
    assert reward_gate.main(args) == 0
    summary = json.loads((tmp_path / "gate" / "summary.json").read_text())
    assert summary["judge_stats"]["calls"] == 6
    assert summary["judge_stats"]["invalid_reasons"] == {"truncated": 6}
    assert summary["arms"]["m"]["invalid_rate"] == 1.0 and summary["arms"]["m"]["reward_mean"] is None


def test_same_seed_same_samples_and_cli_registration(tmp_path, heldout_rows, tiny_model_dir):
    from eval.__main__ import build_parser

    def run_once(name):
        args = ["--arms", f"m={tiny_model_dir}", "--rows", str(heldout_rows), "--out", str(tmp_path / name),
                "--num-prefixes", "2", "--samples", "2", "--think-max-tokens", "3",
                "--suffix-max-tokens", "3", "--top-p", "1.0", "--no-progress"]  # fmt: skip
        parsed = build_parser().parse_args(["reward-gate", *args])  # what `python -m eval reward-gate` runs
        assert parsed.func is reward_gate.run and parsed.func(parsed) == 0
        return [
            {k: v for k, v in r.items() if k != "judge_latency_s"}
            for r in read_jsonl(tmp_path / name / "m.samples.jsonl")
        ]

    assert run_once("first") == run_once("second")
