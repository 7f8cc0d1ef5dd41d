"""RLMT group statistics, artifact flags and stop alerts against hand-computed cases."""

import math

import pytest

from trl_ext.group_metrics import (
    AlertThresholds,
    AlertTracker,
    GroupSample,
    alert_name,
    artifact_flags,
    group_stats,
    has_artifact,
)


def group(*scores, thought="a b", suffix="c d e", tokens=10):
    return [GroupSample(score=s, thought=thought, suffix=suffix, new_tokens=tokens) for s in scores]


def test_group_stats_hand_computed():
    groups = [
        group(1, 0, 0, 1),  # mixed, mean .5
        group(0, 0, 0, 0),  # near-zero, all-zero
        group(1, 1, None, 1),  # one invalid; near-zero, all-one, incomplete
    ]
    m = group_stats(groups)
    valid = [1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1]
    mean = sum(valid) / len(valid)
    assert m["reward_mean"] == pytest.approx(mean)
    assert m["reward_std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in valid) / len(valid)))
    assert m["invalid_judge_rate"] == pytest.approx(1 / 12)
    assert m["mixed_group_rate"] == pytest.approx(1 / 3)
    assert m["near_zero_group_rate"] == pytest.approx(2 / 3)
    assert m["all_zero_group_rate"] == pytest.approx(1 / 3)
    assert m["all_one_group_rate"] == pytest.approx(1 / 3)
    assert m["kept_complete_group_rate"] == pytest.approx(2 / 3)
    assert m["avg_thought_words"] == 2 and m["avg_suffix_words"] == 3 and m["avg_total_new_tokens"] == 10
    assert m["artifact_rate"] == 0


def test_near_zero_needs_two_valid_scores_and_empty_groups_count_nowhere():
    m = group_stats([group(1, None, None), group(None, None)])
    assert m["near_zero_group_rate"] == 0  # a single valid score is not a zero-variance group
    assert m["all_one_group_rate"] == 0.5 and m["all_zero_group_rate"] == 0
    assert m["invalid_judge_rate"] == pytest.approx(4 / 5)
    assert math.isnan(group_stats([])["reward_mean"])


def test_a_step_without_a_valid_score_has_a_missing_reward_not_zero():
    m = group_stats([group(None, None), group(None, None)])
    assert math.isnan(m["reward_mean"]) and math.isnan(m["reward_std"])
    assert m["invalid_judge_rate"] == 1.0 and m["all_zero_group_rate"] == 0


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("bad \ufffd byte", "replacement_char"),
        ("<think> a <think> b <think> c", "think_tags"),
        ("As an AI I must decline", "refusal"),
        ("I cannot do that", "refusal"),
        ("wow " + "!" * 25, "char_repeat"),
        ("12345 67890 12345 67890 12345 67890 12345 67890 ab", "low_alpha"),
    ],
)
def test_artifact_flags(text, flag):
    assert flag in artifact_flags(text)


def test_clean_text_and_boundaries_of_artifact_checks():
    assert artifact_flags("The jury said on Friday that the election was fair.") == []
    assert artifact_flags("<think> a </think> <think> b </think>") == []  # two pairs are fine
    assert artifact_flags("a" * 24) == []  # 24 repeats: below the 25 threshold
    assert "char_repeat" in artifact_flags("a" * 25)
    assert artifact_flags("1234 5678 9") == []  # short text: alpha ratio not checked under 40 chars
    assert has_artifact("fine thought", "x" * 30)


def metrics(**overrides):
    base = {
        "invalid_judge_rate": 0.0,
        "artifact_rate": 0.0,
        "near_zero_group_rate": 0.3,
        "all_zero_group_rate": 0.0,
        "all_one_group_rate": 0.0,
        "avg_total_new_tokens": 100.0,
    }
    return base | overrides


def test_alerts_fire_on_thresholds():
    tracker = AlertTracker(AlertThresholds())
    step1 = metrics()
    step1["length_drift"] = tracker.length_drift(100.0)
    assert tracker.update(1, step1, available_mem_gib=64) == []
    step2 = metrics(invalid_judge_rate=0.06, artifact_rate=0.11, near_zero_group_rate=0.55)
    step2["length_drift"] = tracker.length_drift(121.0)
    names = [alert_name(a) for a in tracker.update(2, step2, available_mem_gib=3.9)]
    assert names == [
        "low_memory",
        "judge_invalid_rate",
        "artifact_rate",
        "response_length_growth",
        "near_zero_group_worsened",
        "near_zero_group_rate",
    ]
    assert step2["length_drift"] == pytest.approx(0.21)


def test_alerts_do_not_fire_at_exact_thresholds():
    tracker = AlertTracker()
    tracker.update(1, metrics(near_zero_group_rate=0.3) | {"length_drift": 0.0})
    same = metrics(invalid_judge_rate=0.05, artifact_rate=0.10, near_zero_group_rate=0.5) | {
        "length_drift": 0.2
    }
    assert tracker.update(2, same, available_mem_gib=4.0) == []


def test_reward_collapse_needs_two_consecutive_steps_and_state_round_trips():
    tracker = AlertTracker()
    assert tracker.update(1, metrics(all_zero_group_rate=1.0)) == []
    assert tracker.update(2, metrics()) == []  # streak broken
    assert tracker.update(3, metrics(all_one_group_rate=1.0)) == []
    resumed = AlertTracker()
    resumed.load_state_dict(tracker.state_dict())
    alerts = resumed.update(4, metrics(all_one_group_rate=1.0))
    assert [alert_name(a) for a in alerts] == ["reward_collapsed"] and "all-one" in alerts[0]
    assert resumed.baseline_near_zero == pytest.approx(0.3)
