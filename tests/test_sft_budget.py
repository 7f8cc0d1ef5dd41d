"""Token-budget matching arithmetic for the raw_base control."""

from __future__ import annotations

import pytest

from trl_ext.sft_budget import epoch_schedule, match_token_budget, sequences_after


def test_reference_run_numbers():
    # 8192 think rows of mean 657 tokens vs raw rows of 512: one epoch of 512 steps x 16 sequences
    # -> 8192*657 = 5,382,144 tokens; raw needs ceil(5382144 / 512) = 10512 sequences = 657 steps.
    budget = match_token_budget(
        [657] * 8192, [512] * 8192, reference_steps=-1, per_device_batch=4, grad_accum=4
    )
    assert budget.steps_per_epoch == budget.reference_steps == 512
    assert budget.reference_tokens == 8192 * 657
    assert budget.matched_steps == 657 and budget.matched_sequences == 657 * 16
    assert budget.matched_tokens == 657 * 16 * 512
    assert 0 <= budget.relative_gap < 16 * 512 / budget.reference_tokens


def test_epoch_schedule_partial_steps():
    assert epoch_schedule(5, 1, 2) == [2, 2, 1]  # the HF Trainer's last step of an epoch is short
    assert epoch_schedule(10, 2, 2) == [4, 4, 2]
    assert epoch_schedule(9, 2, 2) == [4, 4, 1]
    assert epoch_schedule(8, 1, 2, world_size=2) == [4, 4]
    assert sequences_after(0, [2, 2, 1]) == 0
    assert sequences_after(4, [2, 2, 1]) == 5 + 2
    with pytest.raises(ValueError, match="positive"):
        epoch_schedule(0, 1, 1)


def test_uneven_lengths_across_epochs_by_hand():
    think = [80, 90, 70, 100, 75]  # mean 83
    raw = [48] * 5
    budget = match_token_budget(think, raw, reference_steps=3, per_device_batch=1, grad_accum=2)
    # 3 steps = one epoch of 5 sequences -> 415 tokens; raw needs ceil(415/48) = 9 sequences:
    # one epoch (3 steps, 5 seqs) + 2 steps (4 seqs) = 5 steps
    assert budget.reference_sequences == 5 and budget.reference_tokens == 415
    assert budget.matched_steps == 5 and budget.matched_sequences == 9 and budget.matched_tokens == 432
    assert budget.as_dict()["relative_gap"] == pytest.approx((432 - 415) / 415)
    # equal lengths -> equal steps
    assert match_token_budget([7] * 5, [7] * 5, 4, 1, 3).matched_steps == 4


def test_errors():
    with pytest.raises(ValueError, match="non-empty"):
        match_token_budget([], [1], 1, 1, 1)
    with pytest.raises(ValueError, match="same rows"):
        match_token_budget([1, 2], [1], 1, 1, 1)
    with pytest.raises(ValueError, match="empty training sequence"):
        match_token_budget([3], [0], 1, 1, 1)
