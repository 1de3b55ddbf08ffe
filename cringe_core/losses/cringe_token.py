"""The token-level cringe term shared by Binary Cringe and Pairwise Cringe.

Adolphs et al., "The CRINGE Loss: Learning what language not to model", ACL 2023
(arXiv:2211.05826). At a position t with bad token y_t and logits z_t:

1. take the top k+1 logits of z_t, drop y_t if it is among them, else drop the (k+1)-th,
   which leaves exactly k candidates, none of them y_t;
2. sample one candidate j from the softmax over those k logits (no gradient);
3. CR_t = softplus(z_t[y_t] - z_t[j]), the two-way cross-entropy that pushes the bad
   token's logit below the sampled one's.

Shapes: R rows, T positions, V vocabulary, k = top_k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_cringe_candidates(
    logits: torch.Tensor,
    labels: torch.Tensor,
    top_k: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Sample one positive token per position among the top-k candidates that are not the label.

    logits: (R, T, V); labels: (R, T) long, the bad tokens. Returns (R, T) long token ids.

    Sampling is inverse-CDF with one uniform draw per position,
    `u = torch.rand((R, T), generator=generator, dtype=torch.float64)`. The draws are made
    on the generator's device, or with the default generator on the logits' device when
    `generator` is None. j is the first candidate, in descending logit order, whose
    cumulative probability reaches u. The draws therefore depend only on the generator
    state, not on the logits' device. With top_k = 1 there is one candidate and no
    randomness.
    """
    vocab_size = logits.shape[-1]
    if vocab_size < top_k + 1:
        raise ValueError(
            f"top_k = {top_k} needs a vocabulary of at least top_k + 1 = {top_k + 1} tokens, "
            f"but the logits have V = {vocab_size}; lower top_k below the vocabulary size"
        )

    with torch.no_grad():
        top_logits, top_ids = logits.topk(top_k + 1, dim=-1)  # (R, T, k+1)

        # Drop the label's column when the label is among the top k+1, else the last one.
        is_label = top_ids == labels.unsqueeze(-1)  # (R, T, k+1)
        drop_column = torch.where(
            is_label.any(dim=-1), is_label.int().argmax(dim=-1), top_k
        )  # (R, T)
        columns = torch.arange(top_k + 1, device=logits.device)
        keep = columns != drop_column.unsqueeze(-1)  # (R, T, k+1), exactly k True per position
        candidate_shape = (*labels.shape, top_k)
        candidate_ids = top_ids[keep].view(candidate_shape)  # (R, T, k)
        candidate_logits = top_logits[keep].view(candidate_shape)  # (R, T, k)

        # Inverse-CDF sampling from the softmax over the k candidates.
        probabilities = torch.softmax(_widen(candidate_logits), dim=-1)  # (R, T, k)
        cdf = probabilities.cumsum(dim=-1)  # (R, T, k)
        uniform = _uniform(labels.shape, generator, logits.device)  # (R, T) float64
        choice = (cdf < uniform.unsqueeze(-1)).sum(dim=-1).clamp(max=top_k - 1)  # (R, T)
        return candidate_ids.gather(-1, choice.unsqueeze(-1)).squeeze(-1)  # (R, T)


def cringe_token_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    top_k: int,
    generator: torch.Generator | None,
    detach_positive: bool = False,
) -> torch.Tensor:
    """Compute CR_t = softplus(z_t[y_t] - z_t[j]) at every position, with j sampled.

    logits: (R, T, V); labels: (R, T) long, the bad tokens. Returns (R, T) in float32, or
    float64 for float64 logits. Every position is computed: the caller masks out prompt and
    padding positions. `detach_positive` stops the gradient into the sampled logit z_t[j],
    so only the bad token's logit is pushed down. See `sample_cringe_candidates` for how j
    is drawn from `generator`.
    """
    sampled_ids = sample_cringe_candidates(logits, labels, top_k, generator)  # (R, T)
    # One gather for both logits: its backward builds one dense (R, T, V) gradient, not two.
    both = _widen(logits.gather(-1, torch.stack([labels, sampled_ids], dim=-1)))  # (R, T, 2)
    negative, positive = both[..., 0], both[..., 1]  # (R, T), (R, T)
    if detach_positive:
        positive = positive.detach()
    return F.softplus(negative - positive)


def _widen(values: torch.Tensor) -> torch.Tensor:
    return values.to(torch.promote_types(values.dtype, torch.float32))


def _uniform(
    shape: torch.Size, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, dtype=torch.float64, device=device)
    # NOTE: only CPU generators with CPU logits have been run; a CPU generator with CUDA
    # logits goes through the copy below and is untested.
    draws = torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return draws.to(device)
