"""The cringe term's sampling, the pairwise gate and their gradients."""

from __future__ import annotations

from typing import Literal

import pytest
import torch

from cringe_core.losses import LOSSES, LossInputs
from cringe_core.losses.cringe_token import cringe_token_loss, sample_cringe_candidates
from cringe_core.spec import BinaryCringeSpec, PairwiseCringeSpec, SftSpec


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pair_batch(num_pairs: int, length: int, vocab: int, seed: int) -> LossInputs:
    """Float64 pairwise inputs with completions of varied length and right padding."""
    generator = seeded(seed)
    logits = torch.randn(2 * num_pairs, length, vocab, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, vocab, (2 * num_pairs, length), generator=generator)
    lengths = torch.randint(1, length + 1, (2 * num_pairs,), generator=generator)
    mask = torch.arange(length) < lengths.unsqueeze(-1)  # (2B, T)
    return LossInputs(logits, labels, mask, num_pairs)


# ---- sampling ----------------------------------------------------------------------------


@pytest.mark.parametrize("label_rank", ["top", "inside_top_k", "last_of_top_k_plus_1", "outside"])
def test_sampling_never_returns_bad_token(label_rank: str) -> None:
    rows, length, vocab, top_k = 8, 50, 12, 4
    for seed in range(20):
        logits = torch.randn(rows, length, vocab, generator=seeded(seed))
        order = logits.argsort(dim=-1, descending=True)  # (R, T, V)
        rank = {"top": 0, "inside_top_k": 2, "last_of_top_k_plus_1": top_k, "outside": vocab - 1}[
            label_rank
        ]
        labels = order[..., rank]  # (R, T)

        sampled = sample_cringe_candidates(logits, labels, top_k, seeded(1000 + seed))

        assert not (sampled == labels).any()
        allowed = order[..., : top_k + 1]  # (R, T, k+1)
        assert (allowed == sampled.unsqueeze(-1)).any(dim=-1).all()
        if label_rank == "outside":
            # The (k+1)-th logit is dropped when the label is not among the top k+1.
            assert not (sampled == order[..., top_k]).any()


def test_sampling_follows_softmax_over_candidates() -> None:
    # One logit vector is repeated at 40,000 positions. The label is the second-best
    # token, so the candidates are ranks 0, 2 and 3, weighted by the softmax of their logits.
    positions, top_k = 40_000, 3
    z = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.5, -1.0])
    logits = z.expand(1, positions, -1)
    labels = torch.full((1, positions), 1)

    sampled = sample_cringe_candidates(logits, labels, top_k, seeded(0)).flatten()

    candidate_logits = z[[0, 2, 3]]
    expected = torch.softmax(candidate_logits, dim=0)
    observed = torch.stack([(sampled == token).float().mean() for token in (0, 2, 3)])
    assert set(sampled.unique().tolist()) == {0, 2, 3}
    # The standard error of each share is below 0.0025; allow four of them.
    torch.testing.assert_close(observed, expected, atol=0.01, rtol=0.0)


def test_sampling_reproducible_from_generator_state() -> None:
    logits = torch.randn(3, 20, 10, generator=seeded(0))
    labels = torch.randint(0, 10, (3, 20), generator=seeded(1))
    first = sample_cringe_candidates(logits, labels, 5, seeded(42))
    second = sample_cringe_candidates(logits, labels, 5, seeded(42))
    other = sample_cringe_candidates(logits, labels, 5, seeded(43))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_vocabulary_smaller_than_top_k_plus_one_rejected() -> None:
    logits = torch.randn(1, 2, 5)
    labels = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"top_k = 5 needs a vocabulary of at least .* V = 5"):
        cringe_token_loss(logits, labels, 5, seeded(0))


# ---- binary cringe through the loss -------------------------------------------------------


def test_binary_cringe_gradient_never_targets_bad_token() -> None:
    # At each bad position, CR = softplus(z[y] - z[j]) puts a positive gradient on the bad
    # token y and a negative one on exactly one other token j; were j == y, both would
    # vanish. Labels alternate between a top-k token and one outside the top k+1.
    rows, length, vocab, top_k = 6, 40, 16, 5
    for seed in range(10):
        logits = torch.randn(rows, length, vocab, generator=seeded(seed), dtype=torch.float64)
        order = logits.argsort(dim=-1, descending=True)
        labels = torch.where(torch.arange(length) % 2 == 0, order[..., 1], order[..., -1])
        logits.requires_grad_(True)
        inputs = LossInputs(
            logits,
            labels,
            torch.ones(rows, length, dtype=torch.bool),
            None,
            is_good=torch.zeros(rows, dtype=torch.bool),
        )
        spec = BinaryCringeSpec(top_k=top_k)
        output = LOSSES["binary_cringe"].compute(
            inputs, spec, torch.tensor(rows * length), seeded(seed)
        )
        output.loss.backward()
        assert logits.grad is not None

        grad = logits.grad  # (R, T, V)
        at_label = grad.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        assert (at_label > 0).all()
        negative = grad < 0
        assert (negative.sum(dim=-1) == 1).all()
        sampled = negative.int().argmax(dim=-1)
        assert not (sampled == labels).any()


def test_binary_cringe_top_k_one_deterministic() -> None:
    inputs = pair_batch(4, 12, 20, seed=0)
    definition = LOSSES["binary_cringe"]
    normalizer = definition.normalizer(inputs)

    deterministic = [
        definition.compute(inputs, BinaryCringeSpec(top_k=1), normalizer, seeded(seed)).loss
        for seed in (0, 1)
    ]
    sampled = [
        definition.compute(inputs, BinaryCringeSpec(top_k=5), normalizer, seeded(seed)).loss
        for seed in (0, 1)
    ]
    assert deterministic[0].item() == deterministic[1].item()
    # Control: with top_k = 5 the two seeds do draw different candidates.
    assert sampled[0].item() != sampled[1].item()


def test_detach_positive_stops_gradient_into_sampled_logit() -> None:
    logits = torch.randn(2, 6, 9, generator=seeded(0), dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 9, (2, 6), generator=seeded(1))

    cringe_token_loss(logits, labels, 3, seeded(2), detach_positive=True).sum().backward()
    assert logits.grad is not None
    detached = logits.grad.clone()
    logits.grad = None
    cringe_token_loss(logits, labels, 3, seeded(2), detach_positive=False).sum().backward()
    assert logits.grad is not None
    full = logits.grad.clone()

    # Only the label column gets gradient when the positive is detached.
    off_label = torch.ones_like(detached, dtype=torch.bool).scatter_(
        -1, labels.unsqueeze(-1), False
    )
    assert (detached[off_label] == 0).all()
    assert (full[off_label] < 0).sum() == labels.numel()
    torch.testing.assert_close(detached[~off_label], full[~off_label])


def test_binary_cringe_detach_positive_option() -> None:
    # All rows bad, so CE adds nothing: the gradient off the label columns comes only
    # from the sampled positive logits.
    rows, length, vocab = 3, 6, 9
    labels = torch.randint(0, vocab, (rows, length), generator=seeded(1))
    off_label = torch.ones(rows, length, vocab, dtype=torch.bool).scatter_(
        -1, labels.unsqueeze(-1), False
    )
    gradients = {}
    for detach_positive in (True, False):
        logits = torch.randn(rows, length, vocab, generator=seeded(0), dtype=torch.float64)
        logits.requires_grad_(True)
        inputs = LossInputs(
            logits,
            labels,
            torch.ones(rows, length, dtype=torch.bool),
            None,
            is_good=torch.zeros(rows, dtype=torch.bool),
        )
        spec = BinaryCringeSpec(top_k=3, detach_positive=detach_positive)
        output = LOSSES["binary_cringe"].compute(inputs, spec, torch.tensor(18), seeded(2))
        output.loss.backward()
        assert logits.grad is not None
        gradients[detach_positive] = logits.grad

    assert (gradients[True][off_label] == 0).all()
    assert (gradients[False][off_label] < 0).sum() == rows * length


# ---- pairwise gate ---------------------------------------------------------------------


@pytest.mark.parametrize("margin", ["sum", "mean"])
def test_pairwise_gradcheck_through_gate(margin: Literal["sum", "mean"]) -> None:
    inputs = pair_batch(2, 3, 7, seed=1)
    spec = PairwiseCringeSpec(margin=margin, margin_bias=-1.0, temperature=2.0, alpha=3.0, top_k=3)
    normalizer = LOSSES["pairwise_cringe"].normalizer(inputs)

    def loss_of(logits: torch.Tensor) -> torch.Tensor:
        moved = LossInputs(logits, inputs.labels, inputs.mask, inputs.num_pairs)
        # Re-seeded per call, so every evaluation samples the same candidates.
        return LOSSES["pairwise_cringe"].compute(moved, spec, normalizer, seeded(5)).loss

    logits = inputs.logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss_of, (logits,), eps=1e-6, atol=1e-7)


def gate_inputs(chosen_peaked: bool) -> LossInputs:
    """One pair of 20 tokens: one side puts logit +40 on its labels, the other is near-flat.

    Chosen peaked: log p(chosen) ~ 0 and log p(rejected) ~ -20 ln 30, a margin far above
    b = -10. Rejected peaked: the margin is far below b.
    """
    length, vocab = 20, 30
    generator = seeded(3)
    logits = 0.1 * torch.randn(2, length, vocab, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, vocab, (2, length), generator=generator)
    peaked_row = 0 if chosen_peaked else 1
    logits[peaked_row].scatter_(-1, labels[peaked_row].unsqueeze(-1), 40.0)
    return LossInputs(logits, labels, torch.ones(2, length, dtype=torch.bool), 1)


def test_gate_closed_when_margin_far_above_bias() -> None:
    inputs = gate_inputs(chosen_peaked=True)
    spec = PairwiseCringeSpec(temperature=1.0, top_k=1)
    normalizer = LOSSES["pairwise_cringe"].normalizer(inputs)
    output = LOSSES["pairwise_cringe"].compute(inputs, spec, normalizer, seeded(0))

    ce_only = LOSSES["sft"].compute(inputs, SftSpec(), normalizer, None).loss
    ungated = (
        LOSSES["binary_cringe"]
        .compute(inputs, BinaryCringeSpec(top_k=1), normalizer, seeded(0))
        .loss
    )
    assert output.metrics["gate/mean"].item() < 1e-12
    assert output.metrics["gate/active_fraction"].item() == 0.0
    assert output.loss.item() == pytest.approx(ce_only.item(), rel=1e-9)
    # Control: the cringe term of this pair is not small, only gated off.
    assert ungated.item() - ce_only.item() > 0.1


def test_gate_open_when_margin_far_below_bias() -> None:
    inputs = gate_inputs(chosen_peaked=False)
    spec = PairwiseCringeSpec(temperature=1.0, top_k=1)
    normalizer = LOSSES["pairwise_cringe"].normalizer(inputs)
    output = LOSSES["pairwise_cringe"].compute(inputs, spec, normalizer, seeded(0))

    # With g = 1 the loss is Binary Cringe with chosen good and rejected bad.
    ungated = (
        LOSSES["binary_cringe"]
        .compute(inputs, BinaryCringeSpec(top_k=1), normalizer, seeded(0))
        .loss
    )
    ce_only = LOSSES["sft"].compute(inputs, SftSpec(), normalizer, None).loss
    assert output.metrics["gate/mean"].item() > 1 - 1e-12
    assert output.metrics["gate/active_fraction"].item() == 1.0
    assert output.loss.item() == pytest.approx(ungated.item(), rel=1e-9)
    assert output.loss.item() - ce_only.item() > 1.0


def test_detach_gate_changes_gradient_not_value() -> None:
    inputs = pair_batch(3, 5, 8, seed=4)
    normalizer = LOSSES["pairwise_cringe"].normalizer(inputs)
    num_pairs = 3

    def value_and_grad(spec: PairwiseCringeSpec) -> tuple[float, torch.Tensor]:
        logits = inputs.logits.clone().requires_grad_(True)
        moved = LossInputs(logits, inputs.labels, inputs.mask, num_pairs)
        loss = LOSSES["pairwise_cringe"].compute(moved, spec, normalizer, seeded(9)).loss
        loss.backward()
        assert logits.grad is not None
        return loss.item(), logits.grad

    # A gate near 0.5 (b close to the margins) so its gradient is large.
    through_value, through_grad = value_and_grad(PairwiseCringeSpec(margin_bias=0.0, top_k=3))
    detached_value, detached_grad = value_and_grad(
        PairwiseCringeSpec(margin_bias=0.0, top_k=3, detach_gate=True)
    )

    # The cringe term reads only rejected logits, so with a constant gate the chosen rows
    # get exactly the cross-entropy gradient.
    ce_logits = inputs.logits.clone().requires_grad_(True)
    ce_inputs = LossInputs(ce_logits, inputs.labels, inputs.mask, num_pairs)
    LOSSES["sft"].compute(ce_inputs, SftSpec(), normalizer, None).loss.backward()
    assert ce_logits.grad is not None

    assert detached_value == through_value
    assert not torch.allclose(detached_grad, through_grad)
    torch.testing.assert_close(detached_grad[:num_pairs], ce_logits.grad[:num_pairs])
    assert not torch.allclose(through_grad[:num_pairs], ce_logits.grad[:num_pairs])
