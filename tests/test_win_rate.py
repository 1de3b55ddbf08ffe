"""Win rates: counting from rewards, bootstrap intervals, paired comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from cringe_core.evaluation.win_rate import (
    bootstrap_interval,
    outcomes,
    paired_comparison,
    win_rate,
)


def test_counts_on_hand_made_scores() -> None:
    # Differences: +2 (win), 0 (tie), -1 (loss), -0.05 (tie within 0.1), +0.2 (win).
    candidate = [3.0, 1.0, 2.0, 0.5, 0.7]
    reference = [1.0, 1.0, 3.0, 0.55, 0.5]
    result = win_rate(outcomes(candidate, reference, tie_epsilon=0.1))
    assert result.n == 5
    assert result.wins == 2
    assert result.ties == 2
    assert result.losses == 1
    assert result.win_rate == 0.6  # (2 + 0.5 * 2) / 5


def test_tie_needs_exact_equality_at_zero_epsilon() -> None:
    result = outcomes([1.0, 1.0, 1.0], [1.0, 0.999, 1.001])
    assert result.tolist() == [0.5, 1.0, 0.0]


def test_difference_equal_to_epsilon_is_tie() -> None:
    # 0.5 and 0.25 are exact in binary floating point, so the difference is exactly 0.25.
    assert outcomes([0.5, 0.25], [0.25, 0.5], tie_epsilon=0.25).tolist() == [0.5, 0.5]


def test_outcomes_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        outcomes([1.0, 2.0], [1.0])


def test_outcomes_reject_negative_epsilon() -> None:
    with pytest.raises(ValueError, match="tie_epsilon"):
        outcomes([1.0], [0.0], tie_epsilon=-0.1)


def test_bootstrap_reproducible_with_seed() -> None:
    values = np.random.default_rng(1).integers(0, 2, size=50).astype(float)
    first = bootstrap_interval(values, resamples=1000, seed=7)
    second = bootstrap_interval(values, resamples=1000, seed=7)
    other_seed = bootstrap_interval(values, resamples=1000, seed=8)
    assert first == second
    assert first != other_seed


def test_interval_brackets_the_estimate() -> None:
    values = np.array([1.0] * 30 + [0.0] * 20)
    low, high = win_rate(values).interval
    assert low < 0.6 < high
    assert low >= 0.0
    assert high <= 1.0


def test_interval_of_constant_outcomes_is_a_point() -> None:
    assert bootstrap_interval(np.ones(20)) == (1.0, 1.0)


def test_interval_coverage_on_simulated_sets() -> None:
    # 200 evaluation sets of 100 prompts, each a win with probability 0.3, a tie with 0.2
    # and a loss otherwise: the true win rate is 0.3 + 0.5 * 0.2 = 0.4.
    rng = np.random.default_rng(2024)
    true_win_rate = 0.4
    covered = 0
    for index in range(200):
        simulated = rng.choice([1.0, 0.5, 0.0], size=100, p=[0.3, 0.2, 0.5])
        low, high = bootstrap_interval(simulated, resamples=1000, confidence=0.95, seed=index)
        covered += low <= true_win_rate <= high
    assert covered / 200 >= 0.90


def test_bootstrap_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval(np.array([]))


def test_paired_comparison_clear_winner() -> None:
    comparison = paired_comparison(np.ones(30), np.zeros(30))
    assert comparison.difference == 1.0
    assert comparison.interval == (1.0, 1.0)
    assert comparison.a_better
    assert not comparison.b_better


def test_paired_comparison_no_claim_when_interval_has_zero() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, size=40).astype(float)
    b = a[::-1].copy()
    comparison = paired_comparison(a, b, seed=0)
    assert comparison.interval[0] < 0.0 < comparison.interval[1]
    assert not comparison.a_better
    assert not comparison.b_better


def test_paired_comparison_uses_pairing() -> None:
    # Both candidates win on the same 25 of 50 prompts, and B also wins on 5 more. Only
    # those 5 prompts disagree, so the paired interval stays below 0, although the two
    # win rates alone (0.5 and 0.6) have wide, overlapping intervals.
    a = np.array([1.0] * 25 + [0.0] * 25)
    b = a.copy()
    b[25:30] = 1.0
    comparison = paired_comparison(a, b, seed=0)
    assert comparison.difference == pytest.approx(-0.1)
    assert comparison.b_better


def test_paired_comparison_rejects_different_prompt_counts() -> None:
    with pytest.raises(ValueError, match="same prompts"):
        paired_comparison(np.ones(3), np.ones(4))
