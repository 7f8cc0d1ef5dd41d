"""Pool scoring and pair selection on hand cases (docs/method.md §2, steps 2-3)."""

from __future__ import annotations

import math
import random

import pytest

from trl_ext.pairing import (
    Comparison,
    PoolRecord,
    expected_num_calls,
    plan_comparisons,
    pool_rng,
    score_pool,
    select_pair,
    summarize_pools,
    tie_order,
)


@pytest.mark.parametrize(
    "n,mode,repeats,expected",
    [
        (17, "full", 1, 136),
        (17, "pivot", 1, 16),
        (17, "full", 3, 408),
        (18, "full", 1, 153),
        (3, "pivot", 2, 4),
    ],
)
def test_call_counts(n, mode, repeats, expected):
    comps = plan_comparisons(n, random.Random(0), mode=mode, repeats=repeats)
    assert len(comps) == expected == expected_num_calls(n, mode, repeats)
    if mode == "full":
        assert {(c.i, c.j) for c in comps} == {(i, j) for i in range(n) for j in range(i + 1, n)}
    else:
        assert all(0 in (c.i, c.j) for c in comps)


def test_swap_is_seeded_and_mixed():
    a = plan_comparisons(17, pool_rng(1, 5, 0, "p"))
    b = plan_comparisons(17, pool_rng(1, 5, 0, "p"))
    c = plan_comparisons(17, pool_rng(1, 5, 1, "p"))
    assert a == b
    assert [x.swapped for x in a] != [x.swapped for x in c]  # ranks get different coins
    assert 40 < sum(x.swapped for x in a) < 96


def test_winner_undoes_swap():
    assert Comparison(2, 5, 0, swapped=False).winner(1) == 2
    assert Comparison(2, 5, 0, swapped=True).winner(1) == 5
    assert Comparison(2, 5, 0, swapped=True).winner(2) == 2
    assert Comparison(2, 5, 0, swapped=True).winner(None) is None
    with pytest.raises(ValueError):
        Comparison(0, 1, 0, False).winner(3)


def test_scores_hand_case():
    # 3 candidates; 0 beats 1 and 2, 1 beats 2 -> 1.0, 0.5, 0.0
    comps = [Comparison(0, 1, 0, False), Comparison(0, 2, 0, True), Comparison(1, 2, 0, False)]
    pool = score_pool(3, comps, [1, 2, 1])
    assert pool.scores == [1.0, 0.5, 0.0]
    assert pool.num_invalid == 0
    assert select_pair(pool.scores).chosen == 0
    assert select_pair(pool.scores).rejected == 2


def test_invalid_counts_for_nobody():
    comps = [Comparison(0, 1, 0, False), Comparison(0, 2, 0, False), Comparison(1, 2, 0, False)]
    pool = score_pool(3, comps, [None, 1, None])
    assert pool.num_invalid == 2 and pool.invalid_rate == pytest.approx(2 / 3)
    assert pool.scores[0] == 1.0 and pool.scores[2] == 0.0 and math.isnan(pool.scores[1])
    choice = select_pair(pool.scores)
    assert (choice.chosen, choice.rejected) == (0, 2)


def test_repeats_give_vote_fraction():
    comps = plan_comparisons(2, random.Random(3), repeats=4)
    # candidate 0 wins 3 of 4 votes whatever the order shown
    verdicts = [
        (1 if c.option_1 == 0 else 2) if r < 3 else (1 if c.option_1 == 1 else 2) for r, c in enumerate(comps)
    ]
    pool = score_pool(2, comps, verdicts)
    assert pool.scores == [0.75, 0.25]


def test_ties_follow_the_order_and_all_tie_skips():
    scores = [0.5, 1.0, 1.0, 0.0, 0.0]
    assert (select_pair(scores).chosen, select_pair(scores).rejected) == (1, 3)
    choice = select_pair(scores, [2, 4, 0, 1, 3])
    assert (choice.chosen, choice.rejected) == (2, 4)
    assert select_pair([0.5, 0.5, 0.5]) is None
    assert select_pair([math.nan, 0.5, math.nan]) is None
    with pytest.raises(ValueError, match="permutation"):
        select_pair(scores, [0, 0, 1, 2, 3])
    assert tie_order(0, 1, 0, "x", 17) == tie_order(0, 1, 0, "x", 17)  # seeded
    assert sorted(tie_order(0, 1, 0, "x", 17)) == list(range(17))


@pytest.mark.parametrize("tied", [(0, 17), (0, 1, 17), (3, 4)])
def test_tie_break_is_unbiased(tied):
    """Each tied top candidate is chosen ~1/len(tied) of the time, wherever it sits in the pool (the old
    rotation gave a rewrite at the end of an 18-candidate pool 17/18 of its ties against the pivot); the same
    holds for tied bottoms."""
    n, trials = 18, 3000
    top = [1.0 if k in tied else 0.5 for k in range(n)]
    bottom = [0.0 if k in tied else 0.5 for k in range(n)]
    chosen, rejected = [0] * n, [0] * n
    for t in range(trials):
        order = tie_order(5, t, 0, "row", n)
        chosen[select_pair(top, order).chosen] += 1
        rejected[select_pair(bottom, order).rejected] += 1
    for counts in (chosen, rejected):
        assert sum(counts[k] for k in tied) == trials
        for k in tied:  # binomial sd <= 0.0091 at 3000 trials: 0.04 is > 4 sd
            assert abs(counts[k] / trials - 1 / len(tied)) < 0.04, (k, counts[k] / trials)


def test_always_option_one_judge_has_no_position_bias():
    n, trials = 5, 400
    totals = [0.0] * n
    for t in range(trials):
        comps = plan_comparisons(n, pool_rng(7, t, 0, "p"))
        pool = score_pool(n, comps, [1] * len(comps))
        totals = [a + b for a, b in zip(totals, pool.scores)]
    means = [x / trials for x in totals]
    assert all(abs(m - 0.5) < 0.04 for m in means), means


def test_summary_metrics():
    comps = [Comparison(0, 1, 0, False), Comparison(0, 2, 0, False), Comparison(1, 2, 0, False)]
    r1 = PoolRecord(["pivot", "rollout", "rollout"], score_pool(3, comps, [1, 1, 1]), None)
    r1.choice = select_pair(r1.scores.scores)
    r2 = PoolRecord(["pivot", "rollout", "rollout"], score_pool(3, comps, [2, 2, 1]), None)
    r2.choice = select_pair(r2.scores.scores)
    tie_comps = [Comparison(0, 1, 0, False)]
    r3 = PoolRecord(["pivot", "rollout"], score_pool(2, tie_comps, [None]), None)
    m = summarize_pools([r1, r2, r3])
    assert m["dpo_total_prefixes"] == 3 and m["dpo_kept_prefixes"] == 2 and m["dpo_all_tie_prefixes"] == 1
    assert m["chosen_is_pivot_rate"] == 0.5 and m["chosen_is_rollout_rate"] == 0.5
    assert m["rejected_is_pivot_rate"] == 0.5
    assert m["pivot_pointwise_mean"] == pytest.approx(0.5)  # 1.0 and 0.0 (r3 has none)
    assert m["judge_calls"] == 7 and m["judge_invalid_rate"] == pytest.approx(1 / 7)
    assert m["pool_top_score_mean"] == 1.0 and m["pool_bottom_score_mean"] == 0.0
