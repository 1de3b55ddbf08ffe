"""Every loss against a float64 reference written here from the formulas, plus hand-worked cases.

The references loop over pairs, rows and positions with plain Python arithmetic on single
logit vectors; they share no code with `cringe_core.losses`. The cringe term samples its
candidate by the documented contract: one `torch.rand((M_b,), dtype=float64)` draw per
bad completion token, in row-major order over the batch, and the first candidate (in
descending logit order) whose cumulative softmax probability reaches the draw.
"""

from __future__ import annotations

import math

import pytest
import torch

from cringe_core.losses import LOSSES, LossInputs
from cringe_core.spec import BinaryCringeSpec, DpoSpec, IpoSpec, PairwiseCringeSpec, SftSpec

SHAPES = [(1, 1, 6), (2, 4, 7), (3, 6, 16), (5, 3, 9)]  # (B, T, V)


# ---- random padded batches -----------------------------------------------------------


def random_rows(
    rows: int, length: int, vocab: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float64 logits (rows, T, V), labels (rows, T) and a mask with a prompt, a completion
    of 1 to T tokens and right padding in each row."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(rows, length, vocab, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, vocab, (rows, length), generator=generator)
    mask = torch.zeros(rows, length, dtype=torch.bool)
    for row in range(rows):
        start = int(torch.randint(0, length, (1,), generator=generator))
        completion = int(torch.randint(1, length - start + 1, (1,), generator=generator))
        mask[row, start : start + completion] = True
    return logits, labels, mask


def draws(mask: torch.Tensor, bad_rows: list[int], seed: int) -> list[float]:
    """The generator's uniforms, one per bad completion token, in row-major order."""
    count = sum(len(positions(mask, row)) for row in bad_rows)
    uniforms = torch.rand(
        (count,), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    return uniforms.tolist()


# ---- references, from the formulas -----------------------------------------------------


def token_logp(z: torch.Tensor, y: int) -> float:
    """log softmax(z)[y] of one logit vector."""
    values = [float(v) for v in z]
    return values[y] - math.log(sum(math.exp(v) for v in values))


def cringe_term(z: torch.Tensor, y: int, top_k: int, draw: float) -> float:
    """CR = softplus(z[y] - z[j]), j sampled among the top k+1 logits other than y."""
    values = [float(v) for v in z]
    ranked = sorted(range(len(values)), key=lambda v: -values[v])[: top_k + 1]
    candidates = [v for v in ranked if v != y][:top_k]
    weights = [math.exp(values[c]) for c in candidates]
    sampled = candidates[-1]
    cumulative = 0.0
    for candidate, weight in zip(candidates, weights, strict=True):
        cumulative += weight / sum(weights)
        if cumulative >= draw:
            sampled = candidate
            break
    return math.log1p(math.exp(values[y] - values[sampled]))


def positions(mask: torch.Tensor, row: int) -> list[int]:
    return [t for t in range(mask.shape[1]) if bool(mask[row, t])]


def row_logp(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, row: int) -> float:
    return sum(token_logp(logits[row, t], int(labels[row, t])) for t in positions(mask, row))


def reference_pairwise_cringe(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    num_pairs: int,
    spec: PairwiseCringeSpec,
    uniforms: list[float],
) -> dict[str, float]:
    draw = iter(uniforms)
    ce_total, cringe_total = 0.0, 0.0
    margins, gates, chosen_logps, rejected_logps = [], [], [], []
    for pair in range(num_pairs):
        chosen, rejected = pair, num_pairs + pair
        logp_chosen = row_logp(logits, labels, mask, chosen)
        logp_rejected = row_logp(logits, labels, mask, rejected)
        if spec.margin == "mean":
            margin = logp_chosen / len(positions(mask, chosen)) - logp_rejected / len(
                positions(mask, rejected)
            )
        else:
            margin = logp_chosen - logp_rejected
        gate = 1.0 / (1.0 + math.exp(-(spec.margin_bias - margin) / spec.temperature))
        cringe_sum = sum(
            cringe_term(logits[rejected, t], int(labels[rejected, t]), spec.top_k, next(draw))
            for t in positions(mask, rejected)
        )
        ce_total += -logp_chosen
        cringe_total += gate * cringe_sum
        margins.append(margin)
        gates.append(gate)
        chosen_logps.append(logp_chosen)
        rejected_logps.append(logp_rejected)

    tokens = int(mask.sum())
    return {
        "tokens": tokens,
        "loss": (ce_total + spec.alpha * cringe_total) / tokens,
        "ce_loss": ce_total / tokens,
        "cringe_loss": spec.alpha * cringe_total / tokens,
        "gate/mean": sum(gates) / num_pairs,
        "gate/active_fraction": sum(g > 0.5 for g in gates) / num_pairs,
        "margin/mean": sum(margins) / num_pairs,
        "logps/chosen": sum(chosen_logps) / num_pairs,
        "logps/rejected": sum(rejected_logps) / num_pairs,
        "accuracy": sum(m > 0 for m in margins) / num_pairs,
    }


def reference_binary_cringe(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    is_good: list[bool],
    spec: BinaryCringeSpec,
    uniforms: list[float],
) -> dict[str, float]:
    draw = iter(uniforms)
    ce_total, cringe_total = 0.0, 0.0
    for row, good in enumerate(is_good):
        for t in positions(mask, row):
            y = int(labels[row, t])
            if good:
                ce_total += -token_logp(logits[row, t], y)
            else:
                cringe_total += cringe_term(logits[row, t], y, spec.top_k, next(draw))
    tokens = int(mask.sum())
    return {
        "tokens": tokens,
        "loss": (ce_total + spec.alpha * cringe_total) / tokens,
        "ce_loss": ce_total / tokens,
        "cringe_loss": spec.alpha * cringe_total / tokens,
    }


def reference_preference(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    num_pairs: int,
    reference_logps: torch.Tensor,
    beta: float,
    kind: str,
) -> dict[str, float]:
    losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps = [], [], [], [], []
    for pair in range(num_pairs):
        chosen, rejected = pair, num_pairs + pair
        logp_chosen = row_logp(logits, labels, mask, chosen)
        logp_rejected = row_logp(logits, labels, mask, rejected)
        ratio_chosen = logp_chosen - float(reference_logps[chosen])
        ratio_rejected = logp_rejected - float(reference_logps[rejected])
        if kind == "ipo":
            ratio_chosen /= len(positions(mask, chosen))
            ratio_rejected /= len(positions(mask, rejected))
            h = ratio_chosen - ratio_rejected
            losses.append((h - 1.0 / (2.0 * beta)) ** 2)
        else:
            h = ratio_chosen - ratio_rejected
            losses.append(-math.log(1.0 / (1.0 + math.exp(-beta * h))))
        chosen_rewards.append(beta * ratio_chosen)
        rejected_rewards.append(beta * ratio_rejected)
        chosen_logps.append(logp_chosen)
        rejected_logps.append(logp_rejected)

    return {
        "tokens": num_pairs,
        "loss": sum(losses) / num_pairs,
        "rewards/chosen": sum(chosen_rewards) / num_pairs,
        "rewards/rejected": sum(rejected_rewards) / num_pairs,
        "rewards/margins": sum(c - r for c, r in zip(chosen_rewards, rejected_rewards, strict=True))
        / num_pairs,
        "rewards/accuracies": sum(
            c > r for c, r in zip(chosen_rewards, rejected_rewards, strict=True)
        )
        / num_pairs,
        "logps/chosen": sum(chosen_logps) / num_pairs,
        "logps/rejected": sum(rejected_logps) / num_pairs,
    }


def reference_sft(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, target_rows: list[int]
) -> dict[str, float]:
    ce_total = -sum(row_logp(logits, labels, mask, row) for row in target_rows)
    tokens = sum(len(positions(mask, row)) for row in target_rows)
    return {"tokens": tokens, "loss": ce_total / tokens}


def assert_matches(
    output_loss: torch.Tensor, metrics: dict[str, torch.Tensor], expected: dict[str, float]
) -> None:
    assert output_loss.item() == pytest.approx(expected["loss"], rel=1e-9, abs=1e-12)
    expected_metrics = {k: v for k, v in expected.items() if k != "tokens"}
    assert set(metrics) == set(expected_metrics)
    for name, value in expected_metrics.items():
        assert metrics[name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), name


# ---- tests against the references ------------------------------------------------------


PAIRWISE_SPECS = [
    PairwiseCringeSpec(),
    PairwiseCringeSpec(margin="mean"),
    PairwiseCringeSpec(margin_bias=0.5, temperature=0.7, alpha=2.5, top_k=2),
    PairwiseCringeSpec(top_k=1, detach_gate=True),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spec", PAIRWISE_SPECS, ids=lambda s: repr(s.model_dump()))
def test_pairwise_cringe_matches_reference(
    shape: tuple[int, int, int], spec: PairwiseCringeSpec
) -> None:
    num_pairs, length, vocab = shape
    logits, labels, mask = random_rows(2 * num_pairs, length, vocab, seed=sum(shape))
    expected = reference_pairwise_cringe(
        logits,
        labels,
        mask,
        num_pairs,
        spec,
        draws(mask, list(range(num_pairs, 2 * num_pairs)), seed=7),
    )

    inputs = LossInputs(logits, labels, mask, num_pairs)
    definition = LOSSES["pairwise_cringe"]
    assert int(definition.normalizer(inputs)) == expected["tokens"]
    output = definition.compute(
        inputs, spec, torch.tensor(expected["tokens"]), torch.Generator().manual_seed(7)
    )
    assert_matches(output.loss, output.metrics, expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "spec",
    [BinaryCringeSpec(), BinaryCringeSpec(alpha=0.3, top_k=3, detach_positive=True)],
    ids=lambda s: repr(s.model_dump()),
)
def test_binary_cringe_matches_reference_on_binary_rows(
    shape: tuple[int, int, int], spec: BinaryCringeSpec
) -> None:
    rows, length, vocab = shape[0] + 1, shape[1], shape[2]
    logits, labels, mask = random_rows(rows, length, vocab, seed=3 * sum(shape))
    is_good = [row % 3 == 1 for row in range(rows)]
    expected = reference_binary_cringe(
        logits,
        labels,
        mask,
        is_good,
        spec,
        draws(mask, [r for r in range(rows) if not is_good[r]], seed=11),
    )

    inputs = LossInputs(logits, labels, mask, None, is_good=torch.tensor(is_good))
    definition = LOSSES["binary_cringe"]
    assert int(definition.normalizer(inputs)) == expected["tokens"]
    output = definition.compute(
        inputs, spec, torch.tensor(expected["tokens"]), torch.Generator().manual_seed(11)
    )
    assert_matches(output.loss, output.metrics, expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_binary_cringe_matches_reference_on_pairs(shape: tuple[int, int, int]) -> None:
    num_pairs, length, vocab = shape
    logits, labels, mask = random_rows(2 * num_pairs, length, vocab, seed=5 * sum(shape))
    is_good = [True] * num_pairs + [False] * num_pairs
    spec = BinaryCringeSpec(top_k=4)
    expected = reference_binary_cringe(
        logits,
        labels,
        mask,
        is_good,
        spec,
        draws(mask, list(range(num_pairs, 2 * num_pairs)), seed=13),
    )

    inputs = LossInputs(logits, labels, mask, num_pairs)
    definition = LOSSES["binary_cringe"]
    assert int(definition.normalizer(inputs)) == expected["tokens"]
    output = definition.compute(
        inputs, spec, torch.tensor(expected["tokens"]), torch.Generator().manual_seed(13)
    )
    assert_matches(output.loss, output.metrics, expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spec", [DpoSpec(), DpoSpec(beta=0.7), IpoSpec(), IpoSpec(beta=0.05)])
def test_preference_losses_match_reference(
    shape: tuple[int, int, int], spec: DpoSpec | IpoSpec
) -> None:
    num_pairs, length, vocab = shape
    logits, labels, mask = random_rows(2 * num_pairs, length, vocab, seed=7 * sum(shape))
    reference_logps = -5.0 * torch.rand(2 * num_pairs, dtype=torch.float64)
    expected = reference_preference(
        logits, labels, mask, num_pairs, reference_logps, spec.beta, spec.name
    )

    inputs = LossInputs(logits, labels, mask, num_pairs, reference_logps=reference_logps)
    definition = LOSSES[spec.name]
    assert int(definition.normalizer(inputs)) == num_pairs
    output = definition.compute(inputs, spec, torch.tensor(num_pairs), None)
    assert_matches(output.loss, output.metrics, expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_sft_matches_reference_on_pairs(shape: tuple[int, int, int]) -> None:
    num_pairs, length, vocab = shape
    logits, labels, mask = random_rows(2 * num_pairs, length, vocab, seed=11 * sum(shape))
    expected = reference_sft(logits, labels, mask, list(range(num_pairs)))

    inputs = LossInputs(logits, labels, mask, num_pairs)
    definition = LOSSES["sft"]
    assert int(definition.normalizer(inputs)) == expected["tokens"]
    output = definition.compute(inputs, SftSpec(), torch.tensor(expected["tokens"]), None)
    assert_matches(output.loss, output.metrics, expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_sft_matches_reference_on_binary_rows(shape: tuple[int, int, int]) -> None:
    rows, length, vocab = shape[0] + 2, shape[1], shape[2]
    logits, labels, mask = random_rows(rows, length, vocab, seed=13 * sum(shape))
    is_good = [row % 2 == 0 for row in range(rows)]
    expected = reference_sft(logits, labels, mask, [row for row in range(rows) if is_good[row]])

    inputs = LossInputs(logits, labels, mask, None, is_good=torch.tensor(is_good))
    definition = LOSSES["sft"]
    assert int(definition.normalizer(inputs)) == expected["tokens"]
    output = definition.compute(inputs, SftSpec(), torch.tensor(expected["tokens"]), None)
    assert_matches(output.loss, output.metrics, expected)


# ---- numbers worked out by hand --------------------------------------------------------


def test_sft_hand_worked() -> None:
    # softmax([0, ln 3]) = [1/4, 3/4]: the label 1 costs -ln(3/4).
    logits = torch.tensor([[[0.0, math.log(3.0)]], [[5.0, 5.0]]], dtype=torch.float64)
    labels = torch.tensor([[1], [0]])
    mask = torch.tensor([[True], [True]])
    output = LOSSES["sft"].compute(
        LossInputs(logits, labels, mask, 1), SftSpec(), torch.tensor(1), None
    )
    assert output.loss.item() == pytest.approx(-math.log(0.75))


def test_pairwise_cringe_hand_worked() -> None:
    # One pair, one token each, V = 3, top_k = 1, so the sample is deterministic.
    # Chosen: uniform logits, label 0: CE = ln 3.
    # Rejected: logits [2, 1, 0], label 0 (the bad token is the top-1). The top 2 are
    # {0, 1}; dropping the label leaves j = 1, so CR = softplus(2 - 1) = ln(1 + e).
    # log p(rejected) = 2 - ln(e^2 + e + 1); M = -ln 3 - log p(rejected).
    logits = torch.tensor([[[0.0, 0.0, 0.0]], [[2.0, 1.0, 0.0]]], dtype=torch.float64)
    labels = torch.tensor([[0], [0]])
    mask = torch.tensor([[True], [True]])
    spec = PairwiseCringeSpec(top_k=1, margin_bias=-1.0, temperature=2.0, alpha=0.5)

    logp_rejected = 2.0 - math.log(math.exp(2.0) + math.e + 1.0)
    margin = -math.log(3.0) - logp_rejected
    gate = 1.0 / (1.0 + math.exp(-(-1.0 - margin) / 2.0))
    expected = (math.log(3.0) + 0.5 * gate * math.log(1.0 + math.e)) / 2.0

    output = LOSSES["pairwise_cringe"].compute(
        LossInputs(logits, labels, mask, 1), spec, torch.tensor(2), None
    )
    assert output.loss.item() == pytest.approx(expected)
    assert output.metrics["margin/mean"].item() == pytest.approx(margin)
    assert output.metrics["gate/mean"].item() == pytest.approx(gate)


def test_preference_losses_at_reference_policy() -> None:
    # With the policy equal to the reference, h = 0: DPO = ln 2, IPO = (1 / (2 beta))^2.
    logits, labels, mask = random_rows(4, 5, 8, seed=0)
    reference_logps = torch.tensor(
        [row_logp(logits, labels, mask, row) for row in range(4)], dtype=torch.float64
    )
    inputs = LossInputs(logits, labels, mask, 2, reference_logps=reference_logps)

    dpo = LOSSES["dpo"].compute(inputs, DpoSpec(beta=0.3), torch.tensor(2), None)
    ipo = LOSSES["ipo"].compute(inputs, IpoSpec(beta=0.1), torch.tensor(2), None)
    assert dpo.loss.item() == pytest.approx(math.log(2.0))
    assert dpo.metrics["rewards/margins"].item() == pytest.approx(0.0, abs=1e-12)
    assert ipo.loss.item() == pytest.approx(25.0)


def test_dpo_hand_worked_rewards() -> None:
    # Policy log-probs come from uniform logits over V = 4: log p = -ln 4 per token.
    # Chosen: 2 tokens, reference -3.0; rejected: 1 token, reference -1.0.
    # h = (-2 ln 4 + 3) - (-ln 4 + 1) = 2 - ln 4.
    logits = torch.zeros(2, 2, 4, dtype=torch.float64)
    labels = torch.zeros(2, 2, dtype=torch.long)
    mask = torch.tensor([[True, True], [True, False]])
    reference_logps = torch.tensor([-3.0, -1.0], dtype=torch.float64)
    inputs = LossInputs(logits, labels, mask, 1, reference_logps=reference_logps)
    output = LOSSES["dpo"].compute(inputs, DpoSpec(beta=0.5), torch.tensor(1), None)

    h = 2.0 - math.log(4.0)
    assert output.loss.item() == pytest.approx(math.log1p(math.exp(-0.5 * h)))
    assert output.metrics["rewards/chosen"].item() == pytest.approx(
        0.5 * (3.0 - 2.0 * math.log(4.0))
    )
    assert output.metrics["rewards/rejected"].item() == pytest.approx(0.5 * (1.0 - math.log(4.0)))
    assert output.metrics["rewards/accuracies"].item() == 1.0
