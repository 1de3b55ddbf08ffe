"""Collation, the concatenated forward pass and reference log-probs, on a tiny random Llama."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cringe_core.data.collate import collate_examples, collate_pairs
from cringe_core.data.records import TokenizedExample, TokenizedPair
from cringe_core.losses import LOSSES, LossInputs
from cringe_core.losses.forward import compute_sequence_logps, concatenated_forward
from cringe_core.losses.logps import per_token_logps
from cringe_core.losses.packing import row_sums

PAD = 0
VOCAB = 128


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """A two-layer Llama with random weights, in float64 so comparisons can be tight."""
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=PAD,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).double().eval()


def random_pairs(count: int, seed: int) -> list[TokenizedPair]:
    generator = torch.Generator().manual_seed(seed)

    def ids(low: int, high: int) -> list[int]:
        length = int(torch.randint(low, high + 1, (1,), generator=generator))
        return torch.randint(1, VOCAB, (length,), generator=generator).tolist()

    return [TokenizedPair(ids(1, 5), ids(1, 7), ids(1, 7), row=i + 1) for i in range(count)]


def unpadded_logp(model: LlamaForCausalLM, prompt: list[int], completion: list[int]) -> float:
    """log p(completion | prompt) from a forward pass over this one sequence alone."""
    sequence = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=sequence).logits[0]  # (L, V)
    total = 0.0
    for offset, token in enumerate(completion):
        position = len(prompt) + offset  # the token's index; the logits before it score it
        total += float(torch.log_softmax(logits[position - 1], dim=-1)[token])
    return total


# ---- collation -------------------------------------------------------------------------


def test_collate_pairs_hand_worked() -> None:
    pairs = [
        TokenizedPair(prompt_ids=[5, 6], chosen_ids=[7], rejected_ids=[8, 9], row=1),
        TokenizedPair(prompt_ids=[10], chosen_ids=[11, 12, 13], rejected_ids=[14], row=2),
    ]
    batch = collate_pairs(pairs, pad_token_id=PAD)

    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [
        [5, 6, 7, 0],
        [10, 11, 12, 13],
        [5, 6, 8, 9],
        [10, 14, 0, 0],
    ]
    assert batch["attention_mask"].tolist() == [
        [1, 1, 1, 0],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 0, 0],
    ]
    assert batch["labels"].tolist() == [
        [-100, -100, 7, -100],
        [-100, 11, 12, 13],
        [-100, -100, 8, 9],
        [-100, 14, -100, -100],
    ]
    assert all(tensor.dtype == torch.long for tensor in batch.values())


def test_collate_examples_hand_worked() -> None:
    examples = [
        TokenizedExample(prompt_ids=[3], completion_ids=[4, 5], label=False, row=1),
        TokenizedExample(prompt_ids=[6, 7, 8], completion_ids=[9], label=True, row=2),
    ]
    batch = collate_examples(examples, pad_token_id=99)

    assert batch["input_ids"].tolist() == [[3, 4, 5, 99], [6, 7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 4, 5, -100], [-100, -100, -100, 9]]
    assert batch["is_good"].tolist() == [False, True]
    assert batch["is_good"].dtype == torch.bool


def test_collate_empty_list_rejected() -> None:
    with pytest.raises(ValueError, match="at least one pair"):
        collate_pairs([], pad_token_id=PAD)
    with pytest.raises(ValueError, match="at least one example"):
        collate_examples([], pad_token_id=PAD)


# ---- forward ----------------------------------------------------------------------------


def test_concatenated_forward_shifts_and_masks() -> None:
    pairs = random_pairs(3, seed=1)
    batch = collate_pairs(pairs, PAD)
    inputs = concatenated_forward(tiny_llama(), batch, num_pairs=3)

    assert inputs.num_pairs == 3
    assert inputs.is_good is None
    expected_mask = batch["labels"][:, 1:] != -100
    assert torch.equal(inputs.mask, expected_mask)
    # Every completion token is scored, so the mask counts all of them, and the logits
    # and labels are packed: one row per completion token, chosen rows first.
    completion_tokens = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    assert int(inputs.mask.sum()) == completion_tokens
    assert inputs.logits.shape == (completion_tokens, VOCAB)
    expected_labels = [*(t for p in pairs for t in p.chosen_ids)]
    expected_labels += [t for p in pairs for t in p.rejected_ids]
    assert inputs.labels.tolist() == expected_labels


def test_concatenated_forward_matches_separate_forwards() -> None:
    model = tiny_llama()
    pairs = random_pairs(4, seed=2)
    inputs = concatenated_forward(model, collate_pairs(pairs, PAD), num_pairs=4)
    per_token = per_token_logps(inputs.logits, inputs.labels)  # (M,)
    logps = row_sums(per_token, inputs.mask)  # (2B,)

    # One padded forward per side, as a trainer without concatenation would run.
    sides = {
        "chosen": [TokenizedExample(p.prompt_ids, p.chosen_ids, True, p.row) for p in pairs],
        "rejected": [TokenizedExample(p.prompt_ids, p.rejected_ids, False, p.row) for p in pairs],
    }
    chosen_logps = compute_sequence_logps(model, collate_examples(sides["chosen"], PAD))
    rejected_logps = compute_sequence_logps(model, collate_examples(sides["rejected"], PAD))
    torch.testing.assert_close(logps[:4].detach(), chosen_logps, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(logps[4:].detach(), rejected_logps, rtol=1e-10, atol=1e-10)

    # And one unpadded forward per sequence, summed by hand.
    for index, pair in enumerate(pairs):
        chosen = unpadded_logp(model, pair.prompt_ids, pair.chosen_ids)
        rejected = unpadded_logp(model, pair.prompt_ids, pair.rejected_ids)
        assert logps[index].item() == pytest.approx(chosen, rel=1e-10)
        assert logps[4 + index].item() == pytest.approx(rejected, rel=1e-10)


def test_concatenated_forward_passes_is_good() -> None:
    examples = [
        TokenizedExample([1, 2], [3, 4], label=True, row=1),
        TokenizedExample([5], [6], label=False, row=2),
    ]
    inputs = concatenated_forward(tiny_llama(), collate_examples(examples, PAD), num_pairs=None)
    assert inputs.num_pairs is None
    assert inputs.is_good is not None
    assert inputs.is_good.tolist() == [True, False]


def test_compute_sequence_logps_builds_no_graph() -> None:
    model = tiny_llama()
    batch = collate_pairs(random_pairs(2, seed=3), PAD)
    logps = compute_sequence_logps(model, batch)
    assert logps.shape == (4,)
    assert not logps.requires_grad
    assert (logps < 0).all()


# ---- reference log-probs: precomputed versus live ----------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, loss in LOSSES.items() if loss.needs_reference))
def test_precomputed_reference_equals_live(name: str) -> None:
    loss = LOSSES[name]
    spec = loss.spec_type()
    policy = tiny_llama(seed=4)
    reference = copy.deepcopy(policy).requires_grad_(False)
    pairs = random_pairs(4, seed=5)

    # Precomputed before any step, one pair per batch, so the padding differs from training.
    precomputed = torch.zeros(4, 2, dtype=torch.float64)  # (R, 2): chosen, rejected
    for index, pair in enumerate(pairs):
        precomputed[index] = compute_sequence_logps(policy, collate_pairs([pair], PAD))
    precomputed_logps = torch.cat([precomputed[:, 0], precomputed[:, 1]])  # (2B,)

    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    batch = collate_pairs(pairs, PAD)
    step_losses = []
    for _step in range(2):
        inputs = concatenated_forward(policy, batch, num_pairs=4)
        live_logps = compute_sequence_logps(reference, batch)  # the reference forward in the step
        torch.testing.assert_close(live_logps, precomputed_logps, rtol=1e-10, atol=1e-10)

        losses = {}
        for source, reference_logps in (("precomputed", precomputed_logps), ("live", live_logps)):
            source_inputs = LossInputs(
                inputs.logits, inputs.labels, inputs.mask, 4, reference_logps=reference_logps
            )
            losses[source] = loss.compute(source_inputs, spec, loss.normalizer(inputs), None).loss
        assert losses["precomputed"].item() == pytest.approx(losses["live"].item(), rel=1e-10)
        step_losses.append(losses["live"].item())

        optimizer.zero_grad()
        losses["live"].backward()
        optimizer.step()

    # At step 0 the policy is the reference, so h = 0 for every pair.
    at_start = math.log(2.0) if name == "dpo" else (1.0 / (2.0 * spec.beta)) ** 2
    assert step_losses[0] == pytest.approx(at_start, rel=1e-10)
    # Control: after one update the policy differs from the frozen reference.
    assert step_losses[1] != pytest.approx(at_start, rel=1e-6)
