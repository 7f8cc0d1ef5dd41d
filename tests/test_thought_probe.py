"""Thought-use probe (docs/method.md §7): derangements, oracle@k against brute force, per-condition
aggregation against hand-computed cases, then the real command on the tiny embedded model."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import pytest
from gate_helpers import read_jsonl, write_thinking_rows

from eval import thought_probe
from eval.metrics import pass_at_k
from eval.thought_probe import (
    CONDITIONS,
    GENERIC_THOUGHTS,
    condition_deltas,
    deranged_permutation,
    expected_max_at_k,
    generic_thought,
    oracle_at_k,
    oracle_ks,
    summarize_condition,
    summarize_probe_arm,
)

CLOSE_ID = 151668


def test_deranged_permutation_has_no_fixed_points_and_is_seeded():
    for n in range(2, 12):
        for seed in range(20):
            perm = deranged_permutation(n, seed)
            assert sorted(perm) == list(range(n)) and all(p != i for i, p in enumerate(perm))
            assert perm == deranged_permutation(n, seed)
    # n=3 has exactly two derangements; both must be drawn (no hidden bias to one cycle).
    assert {tuple(deranged_permutation(3, s)) for s in range(50)} == {(1, 2, 0), (2, 0, 1)}
    # n=4 has 9 derangements, including the three double swaps that a cyclic shift never yields.
    assert len({tuple(deranged_permutation(4, s)) for s in range(400)}) == 9
    with pytest.raises(ValueError, match="at least 2"):
        deranged_permutation(1, 0)


def test_expected_max_at_k_matches_brute_force():
    rng = random.Random(0)
    for _ in range(40):
        n = rng.randint(1, 7)
        scores = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(n)]
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(scores, k))
            brute = sum(max(s) for s in subsets) / len(subsets)
            assert expected_max_at_k(scores, k) == pytest.approx(brute)
    for n, c, k in [(16, 0, 4), (16, 1, 16), (16, 3, 5), (8, 8, 1), (5, 2, 3)]:
        binary = [1.0] * c + [0.0] * (n - c)
        assert expected_max_at_k(binary, k) == pytest.approx(pass_at_k(n, c, k))  # the unbiased pass@k
    with pytest.raises(ValueError):
        expected_max_at_k([1.0], 2)


def test_oracle_at_k_hand_computed():
    assert oracle_ks(16) == [1, 2, 4, 8, 16] and oracle_ks(6) == [1, 2, 4, 6] and oracle_ks(1) == [1]
    bank = {"p1": [0, 0, 1, 0], "p2": [0, 0, 0, 0], "p3": [1, 1]}
    out = oracle_at_k(bank, [1, 2, 4])
    assert out["oracle_at_1"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert out["oracle_at_2"] == pytest.approx((0.5 + 0 + 1) / 3)  # p1: 1 − C(3,2)/C(4,2) = 0.5
    assert out["oracle_at_4"] == pytest.approx(0.5) and out["oracle_prefixes_at_4"] == 2  # p3 has only 2


def rec(condition, prefix, k, score, thought="t", suffix="one two"):
    return {"condition": condition, "prefix_id": prefix, "sample_idx": k, "score": score, "thought": thought,
            "suffix": suffix}  # fmt: skip


def test_summarize_condition_and_deltas_hand_computed():
    normal_scores = {("p1", 0): 1.0, ("p1", 1): 0.0, ("p2", 0): 1.0, ("p2", 1): 1.0}
    blank_scores = {("p1", 0): 0.0, ("p1", 1): None, ("p2", 0): 1.0, ("p2", 1): 1.0}
    normal = [rec("normal_model_thought", p, k, v) for (p, k), v in normal_scores.items()]
    blank = [rec("blank_thought", p, k, v, thought="") for (p, k), v in blank_scores.items()]
    s = summarize_condition(blank)
    assert s["reward_mean"] == pytest.approx(2 / 3) and s["invalid_rate"] == 0.25
    assert s["prefix_mean_reward"] == pytest.approx(0.5)  # p1: 0 (one valid), p2: 1
    assert s["any_success_prefix_rate"] == 0.5 and s["all_success_prefix_rate"] == 0.5
    assert s["avg_thought_words"] == 0.0 and s["avg_suffix_words"] == 2.0 and s["valid"] == 3
    d = condition_deltas({"normal_model_thought": normal, "blank_thought": blank})
    assert list(d) == ["normal_minus_blank_thought"]
    delta = d["normal_minus_blank_thought"]
    assert delta["mean_delta"] == pytest.approx((0.5 - 0 + 1 - 1) / 2)
    assert delta["normal_better_prefix_rate"] == 0.5 and delta["tie_prefix_rate"] == 0.5
    assert delta["condition_better_prefix_rate"] == 0.0 and delta["shared_prefixes"] == 2


def test_probe_arm_uses_the_first_samples_for_conditions_and_the_whole_bank_for_oracle():
    bank = [rec("normal_model_thought", "p1", k, float(k == 3)) for k in range(4)]  # success only at k=3
    bank += [rec("normal_model_thought", "p2", k, 0.0) for k in range(4)]
    swapped = [rec("same_arm_swapped_thought", p, k, 1.0) for p in ("p1", "p2") for k in range(2)]
    s = summarize_probe_arm(bank + swapped, samples=2, bank_size=4)
    assert s["conditions"]["normal_model_thought"]["num_records"] == 4  # k < 2 only
    assert s["conditions"]["normal_model_thought"]["reward_mean"] == 0.0
    assert s["thought_bank"]["oracle_at_4"] == 0.5 and s["thought_bank"]["oracle_at_1"] == pytest.approx(
        0.125
    )
    assert s["deltas"]["normal_minus_same_arm_swapped_thought"]["mean_delta"] == -1.0
    assert s["best_control"] == "same_arm_swapped_thought" and s["normal_beats_best_control"] is False


def test_generic_thought_rotation():
    assert generic_thought(0, 0) == GENERIC_THOUGHTS[0] and generic_thought(1, 2) == GENERIC_THOUGHTS[3]
    assert generic_thought(2, 3) == GENERIC_THOUGHTS[1]


# ----------------------------------------------------------------------------------- the command


def test_thought_probe_end_to_end_and_resume(tmp_path, embedded, tiny_model_dir, qwen_tokenizer):
    rows_path = write_thinking_rows(embedded.corpus_path, tmp_path / "heldout.jsonl", 4)
    out = tmp_path / "probe"
    args = [
        "--arms", f"think_base={tiny_model_dir}", "--rows", str(rows_path), "--out", str(out),
        "--num-prefixes", "3", "--samples", "2", "--bank-size", "3", "--think-max-tokens", "5",
        "--suffix-max-tokens", "6", "--batch-prefixes", "3", "--offline-threshold", "0.05", "--top-p", "1.0",
        "--no-progress",
    ]  # fmt: skip
    assert thought_probe.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and set(summary["arms"]["think_base"]["conditions"]) == set(CONDITIONS)
    arm = summary["arms"]["think_base"]
    assert "| think_base |" in (out / "summary.md").read_text()
    assert set(arm["deltas"]) == {f"normal_minus_{c}" for c in CONDITIONS[1:]}
    assert {"oracle_at_1", "oracle_at_2", "oracle_at_3"} <= set(arm["thought_bank"])
    rows = read_jsonl(out / "think_base.samples.jsonl")
    assert len(rows) == 3 * 3 + 4 * 3 * 2  # the bank, then four conditions on the first 2 samples
    by = {(r["condition"], r["prefix_id"], r["sample_idx"]): r for r in rows}
    prefixes = summary["prefix_ids"]
    swap = summary["swap_permutation"]
    assert all(swap[p] != p for p in prefixes) and sorted(swap.values()) == sorted(prefixes)
    from eval.thought_rollouts import load_prompt_rows

    rl_rows = {r["id"]: r for r in load_prompt_rows(rows_path, qwen_tokenizer)[0]}
    for index, pid in enumerate(prefixes):
        for k in range(2):
            normal = by[("normal_model_thought", pid, k)]
            assert 0 < len(normal["thought_ids"]) <= 5 and len(normal["suffix_ids"]) <= 6
            blank = by[("blank_thought", pid, k)]
            assert blank["thought_ids"] == [] and blank["boundary_ids"] == [CLOSE_ID]
            generic = by[("generic_thought", pid, k)]
            assert generic["thought"] == generic_thought(index, k)
            assert generic["thought_ids"] == qwen_tokenizer.encode(
                generic["thought"], add_special_tokens=False
            )
            swapped = by[("same_arm_swapped_thought", pid, k)]
            donor = by[("normal_model_thought", swap[pid], k)]
            donor_ids = donor["thought_ids"][:-1] if donor["closed_by_model"] else donor["thought_ids"]
            assert swapped["thought_source"] == swap[pid] and swapped["thought_ids"] == donor_ids
            teacher = by[("teacher_thought", pid, k)]
            assert teacher["thought"] == rl_rows[pid]["teacher_thought"] and teacher["thought"]
            for row in (blank, generic, swapped, teacher):
                assert row["boundary_ids"] == [CLOSE_ID] and row["new_tokens"] == len(row["suffix_ids"]) <= 6

    # Kill during the teacher condition: resume generates exactly the missing samples, bank untouched.
    path = out / "think_base.samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-4]) + lines[-4][:30])
    assert thought_probe.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["think_base"]["generated"] == {"teacher_thought": 4}
    resumed = read_jsonl(path)
    assert resumed[:-4] == [json.loads(line) for line in lines[:-4]]
    assert Counter(r["condition"] for r in resumed) == Counter(r["condition"] for r in rows)


def test_probe_flag_errors(tmp_path, embedded, tiny_model_dir):
    rows_path = write_thinking_rows(embedded.corpus_path, tmp_path / "heldout.jsonl", 2)
    base = ["--arms", f"m={tiny_model_dir}", "--rows", str(rows_path), "--out", str(tmp_path / "p")]
    with pytest.raises(SystemExit, match="--bank-size"):
        thought_probe.main([*base, "--samples", "4", "--bank-size", "2"])
    with pytest.raises(SystemExit, match="unknown"):
        thought_probe.main([*base, "--conditions", "blank_thought,bogus"])
    rl = tmp_path / "rl.jsonl"
    rl.write_text(json.dumps({"id": "a", "prompt": "x <think>", "prefix": "x", "reference": "y"}) + "\n")
    with pytest.raises(SystemExit, match="no 'teacher_thought'"):
        thought_probe.main([*base[:2], "--rows", str(rl), "--out", str(tmp_path / "q")])
    with pytest.raises(SystemExit, match="needs ≥ 2 prefixes"):
        thought_probe.main([*base[:2], "--rows", str(rl), "--out", str(tmp_path / "q"), "--conditions",
                            "same_arm_swapped_thought"])  # fmt: skip
