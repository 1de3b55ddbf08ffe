"""Length and repetition of generated completions."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def repeat_at_n(tokens: Sequence[Hashable], n: int = 3) -> float:
    """Share of the n-grams in `tokens` that already appeared earlier in the same sequence.

    `repeat@3` of "a b c a b c" (as words) is 1/4: of its four 3-grams only the last,
    "a b c", repeats one seen before. A sequence with no n-gram (shorter than n) scores 0.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    total = len(tokens) - n + 1
    if total <= 0:
        return 0.0
    seen: set[tuple[Hashable, ...]] = set()
    repeats = 0
    for start in range(total):
        gram = tuple(tokens[start : start + n])
        if gram in seen:
            repeats += 1
        seen.add(gram)
    return repeats / total


def mean_repeat_at_n(sequences: Sequence[Sequence[Hashable]], n: int = 3) -> float:
    """Mean of `repeat_at_n` over completions, each counting once; 0 for no completions."""
    if not sequences:
        return 0.0
    return sum(repeat_at_n(tokens, n) for tokens in sequences) / len(sequences)


def mean_length(sequences: Sequence[Sequence[Hashable]]) -> float:
    """Mean number of tokens per completion; 0 for no completions."""
    if not sequences:
        return 0.0
    return sum(len(tokens) for tokens in sequences) / len(sequences)
