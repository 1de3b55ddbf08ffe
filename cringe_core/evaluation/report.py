"""Short text tables of evaluation and reward-model results, for the command line."""

from __future__ import annotations

from typing import Any


def format_evaluation(results: dict[str, Any]) -> str:
    """Format one row per candidate (counts, win rate with interval, length, repeat@3)."""
    reference = results["reference"]
    against = reference.get("model") or reference.get("path")
    lines = [
        f"{results['eval_set']['prompts']} prompts, judged by {results['judge']} against "
        f"{reference['source']} references ({against}), tie_epsilon {results['tie_epsilon']:g}",
        "",
        f"{'model':<40} {'n':>4} {'wins':>5} {'ties':>5} {'losses':>6} {'win rate':>9} "
        f"{'interval':>16} {'length':>7} {'repeat@3':>9}",
    ]
    for candidate in results["candidates"]:
        low, high = candidate["interval"]
        lines.append(
            f"{_short(candidate['model'], 40):<40} {candidate['n']:>4} {candidate['wins']:>5} "
            f"{candidate['ties']:>5} {candidate['losses']:>6} {candidate['win_rate']:>9.3f} "
            f"{f'[{low:.3f}, {high:.3f}]':>16} {candidate['mean_length_tokens']:>7.1f} "
            f"{candidate['repeat_at_3']:>9.3f}"
        )
    for candidate in results["candidates"]:
        preference = candidate.get("preference")
        if preference:
            lines.append(
                f"preference accuracy of {candidate['model']}: {preference['accuracy']:.3f} "
                f"on {preference['pairs']} pairs (mean margin {preference['mean_margin']:.3f})"
            )

    comparison = results.get("comparison")
    if comparison:
        low, high = comparison["interval"]
        if comparison["a_better"]:
            verdict = "the first model is better"
        elif comparison["b_better"]:
            verdict = "the second model is better"
        else:
            verdict = "no difference claimed (the interval contains 0)"
        lines.append(
            f"paired difference of win rates (first - second): {comparison['difference']:+.3f}, "
            f"{comparison['confidence']:.0%} interval [{low:+.3f}, {high:+.3f}]: {verdict}"
        )
    return "\n".join(lines)


def format_reward_training(steps: int, model_dir: str, heldout: dict[str, Any] | None) -> str:
    lines = [f"trained the reward model {steps} steps; saved to {model_dir}"]
    if heldout is None:
        lines.append("no held-out pairs (eval_fraction is 0)")
    else:
        lines.append(
            f"held-out accuracy {heldout['accuracy']:.3f}, mean margin "
            f"{heldout['mean_margin']:.3f} on {heldout['pairs']} pairs "
            f"({heldout['prompts']} prompts)"
        )
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]
