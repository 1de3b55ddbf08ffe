"""Split invariance, normalizers, half-precision log-probs and input errors of every loss."""

from __future__ import annotations

import pytest
import torch

from cringe_core.losses import LOSSES, LossDefinition, LossInputs
from cringe_core.losses import logps as logps_module
from cringe_core.losses.logps import gather_with_logsumexp, per_token_logps

NUM_PAIRS, LENGTH, VOCAB = 4, 7, 10

# (loss name, data kind) for every kind each registered loss accepts.
LOSS_KINDS = [(name, kind) for name, loss in LOSSES.items() for kind in sorted(loss.data_kinds)]


def deterministic_spec(loss: LossDefinition) -> object:
    """The default spec, with top_k = 1 where the loss samples, so that every split of a
    batch picks the same cringe candidates."""
    if "top_k" in loss.spec_type.model_fields:
        return loss.spec_type(top_k=1)
    return loss.spec_type()


def random_inputs(kind: str, seed: int = 0) -> LossInputs:
    """Float64 inputs with right padding: B pairs in pairwise layout, or 2B binary rows."""
    generator = torch.Generator().manual_seed(seed)
    rows = 2 * NUM_PAIRS
    logits = torch.randn(rows, LENGTH, VOCAB, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, VOCAB, (rows, LENGTH), generator=generator)
    starts = torch.randint(0, 3, (rows,), generator=generator)
    ends = starts + torch.randint(1, LENGTH - 2, (rows,), generator=generator)
    columns = torch.arange(LENGTH)
    mask = (columns >= starts.unsqueeze(-1)) & (columns < ends.unsqueeze(-1))  # (N, T)
    reference_logps = -10.0 * torch.rand(rows, generator=generator, dtype=torch.float64)
    if kind == "pairs":
        return LossInputs(logits, labels, mask, NUM_PAIRS, reference_logps=reference_logps)
    is_good = torch.rand(rows, generator=generator) < 0.5
    is_good[:2] = torch.tensor([True, False])
    return LossInputs(logits, labels, mask, None, is_good=is_good, reference_logps=reference_logps)


def select_rows(inputs: LossInputs, rows: list[int], num_pairs: int | None) -> LossInputs:
    """A sub-batch of the given rows, cut to its own padded length as a collator would."""
    mask = inputs.mask[rows]
    length = int(mask.any(dim=0).nonzero().max()) + 1
    return LossInputs(
        logits=inputs.logits[rows, :length].detach().clone().requires_grad_(True),
        labels=inputs.labels[rows, :length],
        mask=mask[:, :length],
        num_pairs=num_pairs,
        is_good=None if inputs.is_good is None else inputs.is_good[rows],
        reference_logps=None if inputs.reference_logps is None else inputs.reference_logps[rows],
    )


def halves(inputs: LossInputs) -> list[tuple[list[int], LossInputs]]:
    if inputs.num_pairs is None:
        parts = [[0, 1, 2], [3, 4, 5, 6, 7]]
        return [(rows, select_rows(inputs, rows, None)) for rows in parts]
    # Pairs 0 and 1, then pairs 2 and 3, each keeping the chosen-then-rejected layout.
    parts = [[0, 1, 4, 5], [2, 3, 6, 7]]
    return [(rows, select_rows(inputs, rows, 2)) for rows in parts]


@pytest.mark.parametrize(("name", "kind"), LOSS_KINDS)
def test_split_batch_equals_whole(name: str, kind: str) -> None:
    loss = LOSSES[name]
    spec = deterministic_spec(loss)
    whole = random_inputs(kind)
    whole.logits.requires_grad_(True)
    parts = halves(whole)

    normalizer = loss.normalizer(whole)
    assert int(normalizer) == sum(int(loss.normalizer(part)) for _, part in parts)

    whole_loss = loss.compute(whole, spec, normalizer, torch.Generator().manual_seed(0)).loss
    whole_loss.backward()
    part_losses = []
    for _, part in parts:
        part_loss = loss.compute(part, spec, normalizer, torch.Generator().manual_seed(0)).loss
        part_loss.backward()
        part_losses.append(part_loss)

    torch.testing.assert_close(whole_loss, sum(part_losses), rtol=1e-12, atol=1e-12)
    assert whole.logits.grad is not None
    for rows, part in parts:
        assert part.logits.grad is not None
        length = part.logits.shape[1]
        torch.testing.assert_close(whole.logits.grad[rows, :length], part.logits.grad)
        assert (whole.logits.grad[rows, length:] == 0).all()


@pytest.mark.parametrize(("name", "kind"), LOSS_KINDS)
def test_normalizer_needs_no_logits(name: str, kind: str) -> None:
    # The trainer counts the global normalizer before any forward pass.
    inputs = random_inputs(kind)
    placeholder = LossInputs(
        torch.empty(0), inputs.labels, inputs.mask, inputs.num_pairs, is_good=inputs.is_good
    )
    assert int(LOSSES[name].normalizer(placeholder)) == int(LOSSES[name].normalizer(inputs))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_empty_completion_gives_finite_loss(name: str) -> None:
    loss = LOSSES[name]
    kind = sorted(loss.data_kinds)[0]
    inputs = random_inputs(kind)
    inputs.mask[0] = False
    inputs.mask[NUM_PAIRS] = False
    output = loss.compute(inputs, loss.spec_type(), loss.normalizer(inputs), None)
    assert torch.isfinite(output.loss)
    assert all(torch.isfinite(value) for value in output.metrics.values())


@pytest.mark.parametrize(("name", "kind"), LOSS_KINDS)
def test_micro_batch_without_tokens(name: str, kind: str) -> None:
    # A micro-batch can hold no scored token at all, e.g. only bad rows for sft; its loss
    # is zero and its backward pass still runs, so that data-parallel ranks stay in step.
    loss = LOSSES[name]
    inputs = random_inputs(kind)
    inputs.mask[:] = False
    packed_logits = inputs.logits[inputs.mask].requires_grad_(True)  # (0, V)
    inputs.logits, inputs.labels = packed_logits, inputs.labels[inputs.mask]
    output = loss.compute(inputs, loss.spec_type(), torch.tensor(1), torch.Generator())
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert packed_logits.grad is not None
    assert packed_logits.grad.shape == (0, VOCAB)


def test_sft_micro_batch_of_bad_rows() -> None:
    inputs = random_inputs("binary")
    inputs.is_good = torch.zeros(2 * NUM_PAIRS, dtype=torch.bool)
    output = LOSSES["sft"].compute(inputs, LOSSES["sft"].spec_type(), torch.tensor(1), None)
    assert output.loss.item() == 0.0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_metrics_detached_scalars(name: str) -> None:
    loss = LOSSES[name]
    inputs = random_inputs(sorted(loss.data_kinds)[0])
    inputs.logits.requires_grad_(True)
    output = loss.compute(inputs, loss.spec_type(), loss.normalizer(inputs), None)
    assert output.loss.requires_grad
    assert output.loss.shape == ()
    assert "loss" in output.metrics
    for metric, value in output.metrics.items():
        assert value.shape == (), metric
        assert not value.requires_grad, metric


# ---- half-precision log-probs -----------------------------------------------------------


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
@pytest.mark.parametrize("chunk_elements", [None, 3 * 50])
def test_half_precision_logps_match_float64(
    dtype: torch.dtype,
    tolerance: float,
    chunk_elements: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if chunk_elements is not None:
        # Three positions per chunk, with a remainder: 4 * 5 = 20 positions.
        monkeypatch.setattr(logps_module, "_CHUNK_ELEMENTS", chunk_elements)
    generator = torch.Generator().manual_seed(0)
    logits = (8.0 * torch.randn(4, 5, 50, generator=generator)).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 50, (4, 5), generator=generator)
    weights = torch.randn(4, 5, generator=generator, dtype=torch.float64)

    exact_logits = logits.detach().double().requires_grad_(True)
    exact = torch.log_softmax(exact_logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    (exact * weights).sum().backward()
    result = per_token_logps(logits, labels)
    (result * weights).sum().backward()

    assert result.dtype == torch.float32
    # The half-precision values are exact inputs; only float32 arithmetic differs.
    torch.testing.assert_close(result.double(), exact.detach(), rtol=0, atol=1e-5)
    assert logits.grad is not None and exact_logits.grad is not None
    assert logits.grad.dtype == dtype
    torch.testing.assert_close(
        logits.grad.double(), exact_logits.grad, rtol=tolerance, atol=tolerance
    )


def test_float32_logps_match_float64() -> None:
    logits = 5.0 * torch.randn(3, 4, 30, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 30, (3, 4), generator=torch.Generator().manual_seed(2))
    exact = torch.log_softmax(logits.double(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    result = per_token_logps(logits, labels)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.double(), exact, rtol=0, atol=1e-5)


def test_float32_logps_gradient_masked() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = (5.0 * torch.randn(3, 6, 40, generator=generator)).requires_grad_(True)
    labels = torch.randint(0, 40, (3, 6), generator=generator)
    weights = torch.randn(3, 6, generator=generator)
    weights[:, :2] = 0.0  # prompt positions: no gradient flows in
    weights[2] = 0.0  # a row with no active position at all

    exact_logits = logits.detach().double().requires_grad_(True)
    exact = torch.log_softmax(exact_logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    (exact * weights.double()).sum().backward()
    (per_token_logps(logits, labels) * weights).sum().backward()

    assert logits.grad is not None and exact_logits.grad is not None
    torch.testing.assert_close(logits.grad.double(), exact_logits.grad, rtol=1e-5, atol=1e-6)
    assert not logits.grad[:, :2].any()
    assert not logits.grad[2].any()


@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.bfloat16, 1e-2)],
)
@pytest.mark.parametrize("chunk_elements", [None, 3 * 40])
def test_gathered_logits_and_logsumexp_gradient(
    dtype: torch.dtype,
    tolerance: float,
    chunk_elements: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both outputs carry a gradient, as in the cringe term (two gathered logits per token)
    # beside the token log-prob. Some positions get no gradient through the log-sum-exp.
    if chunk_elements is not None:
        monkeypatch.setattr(logps_module, "_CHUNK_ELEMENTS", chunk_elements)
    generator = torch.Generator().manual_seed(5)
    logits = (4.0 * torch.randn(11, 40, generator=generator)).to(dtype).requires_grad_(True)
    ids = torch.randint(0, 40, (11, 2), generator=generator)
    ids[3, 1] = ids[3, 0]  # the same id twice: both gradients land on one logit
    gathered_weights = torch.randn(11, 2, generator=generator, dtype=torch.float64)
    lse_weights = torch.randn(11, generator=generator, dtype=torch.float64)
    lse_weights[[0, 4, 5, 10]] = 0.0

    exact_logits = logits.detach().double().requires_grad_(True)
    exact_gathered = exact_logits.gather(-1, ids)
    exact_lse = torch.logsumexp(exact_logits, dim=-1)
    ((exact_gathered * gathered_weights).sum() + (exact_lse * lse_weights).sum()).backward()
    gathered, lse = gather_with_logsumexp(logits, ids)
    ((gathered * gathered_weights).sum() + (lse * lse_weights).sum()).backward()

    assert gathered.dtype == lse.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(gathered.double(), exact_gathered.detach(), rtol=0, atol=0)
    torch.testing.assert_close(lse.double(), exact_lse.detach(), rtol=tolerance, atol=tolerance)
    assert logits.grad is not None and exact_logits.grad is not None
    assert logits.grad.dtype == dtype
    torch.testing.assert_close(
        logits.grad.double(), exact_logits.grad, rtol=tolerance, atol=tolerance
    )


@pytest.mark.parametrize(("name", "kind"), LOSS_KINDS)
def test_packed_logits_equal_padded(name: str, kind: str) -> None:
    # The training forward pass gives packed logits; tests and callers may give padded ones.
    loss = LOSSES[name]
    padded = random_inputs(kind)
    padded.logits.requires_grad_(True)
    packed_logits = padded.logits.detach()[padded.mask].requires_grad_(True)  # (M, V)
    packed = LossInputs(
        packed_logits,
        padded.labels[padded.mask],
        padded.mask,
        padded.num_pairs,
        is_good=padded.is_good,
        reference_logps=padded.reference_logps,
    )

    normalizer = loss.normalizer(padded)
    outputs = [
        loss.compute(inputs, loss.spec_type(), normalizer, torch.Generator().manual_seed(3))
        for inputs in (padded, packed)
    ]
    for output in outputs:
        output.loss.backward()

    torch.testing.assert_close(outputs[0].loss, outputs[1].loss, rtol=0, atol=0)
    assert padded.logits.grad is not None and packed_logits.grad is not None
    torch.testing.assert_close(padded.logits.grad[padded.mask], packed_logits.grad)
    assert not padded.logits.grad[~padded.mask].any()


def test_packed_logits_must_match_the_mask() -> None:
    inputs = random_inputs("pairs")
    tokens = int(inputs.mask.sum())
    inputs.logits = inputs.logits[inputs.mask][:-1]  # one row short
    inputs.labels = inputs.labels[inputs.mask][:-1]
    with pytest.raises(ValueError, match=f"M = mask.sum\\(\\) = {tokens}"):
        LOSSES["dpo"].compute(inputs, LOSSES["dpo"].spec_type(), torch.tensor(NUM_PAIRS), None)


# ---- input errors -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, loss in LOSSES.items() if loss.needs_reference))
def test_missing_reference_logps_rejected(name: str) -> None:
    inputs = random_inputs("pairs")
    inputs.reference_logps = None
    with pytest.raises(ValueError, match=r"needs inputs\.reference_logps"):
        LOSSES[name].compute(inputs, LOSSES[name].spec_type(), torch.tensor(NUM_PAIRS), None)


@pytest.mark.parametrize(
    "name", sorted(n for n, loss in LOSSES.items() if "binary" not in loss.data_kinds)
)
def test_pair_losses_reject_binary_rows(name: str) -> None:
    inputs = random_inputs("binary")
    with pytest.raises(ValueError, match="needs preference pairs"):
        LOSSES[name].normalizer(inputs)
    with pytest.raises(ValueError, match="needs preference pairs"):
        LOSSES[name].compute(inputs, LOSSES[name].spec_type(), torch.tensor(1), None)


@pytest.mark.parametrize(
    "name", sorted(n for n, loss in LOSSES.items() if "binary" in loss.data_kinds)
)
def test_binary_rows_without_is_good_rejected(name: str) -> None:
    inputs = random_inputs("binary")
    inputs.is_good = None
    with pytest.raises(ValueError, match="without is_good"):
        LOSSES[name].compute(inputs, LOSSES[name].spec_type(), torch.tensor(1), None)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_row_count_must_be_twice_num_pairs(name: str) -> None:
    inputs = random_inputs("pairs")
    inputs.num_pairs = NUM_PAIRS - 1
    with pytest.raises(ValueError, match="2 \\* num_pairs rows"):
        LOSSES[name].compute(inputs, LOSSES[name].spec_type(), torch.tensor(1), None)


def test_reference_logps_shape_checked() -> None:
    inputs = random_inputs("pairs")
    inputs.reference_logps = torch.zeros(NUM_PAIRS, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"reference_logps must be \(N,\) = \(8,\)"):
        LOSSES["dpo"].compute(inputs, LOSSES["dpo"].spec_type(), torch.tensor(NUM_PAIRS), None)
