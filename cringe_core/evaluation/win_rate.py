"""Win rates judged by a reward model, with percentile-bootstrap intervals.

For prompt i with candidate reward c_i and reference reward r_i, d_i = c_i - r_i is a win
when d_i > tie_epsilon, a loss when d_i < -tie_epsilon, and a tie (counting 0.5)
otherwise. The win rate is the mean outcome over the n prompts.

The interval resamples prompts: each of `resamples` draws takes n prompts with
replacement and recomputes the mean; the interval is the (alpha/2, 1 - alpha/2)
quantiles of those means, alpha = 1 - confidence (Efron and Tibshirani, "An
Introduction to the Bootstrap", 1993, chapter 13). Two candidates judged on the same
prompts are compared by the mean of their paired outcome differences, resampling the
same prompts for both, so the interval accounts for the prompts they share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

WIN, TIE, LOSS = 1.0, 0.5, 0.0


def outcomes(
    candidate: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    tie_epsilon: float = 0.0,
) -> np.ndarray:
    """Score each prompt 1 (win), 0.5 (tie) or 0 (loss) from the two rewards: (n,)."""
    candidate_rewards = np.asarray(candidate, dtype=np.float64)
    reference_rewards = np.asarray(reference, dtype=np.float64)
    if candidate_rewards.shape != reference_rewards.shape or candidate_rewards.ndim != 1:
        raise ValueError(
            f"candidate and reference rewards must be two 1-D sequences of the same length, "
            f"got shapes {candidate_rewards.shape} and {reference_rewards.shape}"
        )
    if tie_epsilon < 0:
        raise ValueError(f"tie_epsilon must be >= 0, got {tie_epsilon}")
    difference = candidate_rewards - reference_rewards  # (n,)
    result = np.full(difference.shape, TIE)
    result[difference > tie_epsilon] = WIN
    result[difference < -tie_epsilon] = LOSS
    return result


def bootstrap_interval(
    values: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values` (one value per prompt)."""
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"bootstrap needs a non-empty 1-D array, got shape {values.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    generator = np.random.default_rng(seed)
    draws = generator.integers(0, len(values), size=(resamples, len(values)))  # (R, n)
    means = values[draws].mean(axis=1)  # (R,)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class WinRate:
    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float  # (wins + 0.5 * ties) / n
    interval: tuple[float, float]
    confidence: float

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["interval"] = list(self.interval)
        return data


def win_rate(
    outcome: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> WinRate:
    """Count wins, ties and losses and attach the bootstrap interval of the win rate."""
    return WinRate(
        n=len(outcome),
        wins=int((outcome == WIN).sum()),
        ties=int((outcome == TIE).sum()),
        losses=int((outcome == LOSS).sum()),
        win_rate=float(outcome.mean()),
        interval=bootstrap_interval(outcome, resamples, confidence, seed),
        confidence=confidence,
    )


@dataclass(frozen=True)
class PairedComparison:
    n: int
    win_rate_a: float
    win_rate_b: float
    difference: float  # win_rate_a - win_rate_b
    interval: tuple[float, float]
    confidence: float

    @property
    def a_better(self) -> bool:
        """A beats B only when the whole interval of the difference is above 0."""
        return self.interval[0] > 0.0

    @property
    def b_better(self) -> bool:
        return self.interval[1] < 0.0

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["interval"] = list(self.interval)
        data["a_better"] = self.a_better
        data["b_better"] = self.b_better
        return data


def paired_comparison(
    outcome_a: np.ndarray,
    outcome_b: np.ndarray,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two candidates' outcomes on the same prompts, in the same order."""
    if outcome_a.shape != outcome_b.shape:
        raise ValueError(
            f"paired comparison needs outcomes on the same prompts, got {outcome_a.shape} "
            f"and {outcome_b.shape}"
        )
    difference = outcome_a - outcome_b  # (n,)
    return PairedComparison(
        n=len(difference),
        win_rate_a=float(outcome_a.mean()),
        win_rate_b=float(outcome_b.mean()),
        difference=float(difference.mean()),
        interval=bootstrap_interval(difference, resamples, confidence, seed),
        confidence=confidence,
    )
