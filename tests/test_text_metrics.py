"""repeat@3 and mean length on hand-made completions."""

from __future__ import annotations

import pytest

from cringe_core.evaluation.text_metrics import mean_length, mean_repeat_at_n, repeat_at_n


def test_repeat_of_repeated_phrase() -> None:
    # 3-grams: (a b c) (b c a) (c a b) (a b c); only the last repeats an earlier one.
    assert repeat_at_n(["a", "b", "c", "a", "b", "c"]) == 0.25


def test_repeat_of_fresh_text_is_zero() -> None:
    assert repeat_at_n(["the", "cat", "sat", "on", "the", "mat"]) == 0.0


def test_repeat_of_one_word_loop() -> None:
    # Five words give three 3-grams (x x x), and the second and third repeat the first.
    assert repeat_at_n(["x", "x", "x", "x", "x"]) == pytest.approx(2 / 3)


def test_repeat_of_short_text_is_zero() -> None:
    assert repeat_at_n(["only", "two"]) == 0.0


def test_repeat_counts_characters_of_a_string() -> None:
    # A string is a sequence of characters: "ababa" has 3-grams aba, bab, aba.
    assert repeat_at_n("ababa") == pytest.approx(1 / 3)


def test_repeat_rejects_zero_n() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        repeat_at_n(["a"], n=0)


def test_mean_repeat_weights_completions_equally() -> None:
    completions = [["a", "b", "c", "a", "b", "c"], ["one", "two", "three"]]
    assert mean_repeat_at_n(completions) == pytest.approx(0.125)


def test_mean_length_in_tokens() -> None:
    assert mean_length([[1, 2, 3], [4], []]) == pytest.approx(4 / 3)


def test_empty_lists_give_zero() -> None:
    assert mean_length([]) == 0.0
    assert mean_repeat_at_n([]) == 0.0
