"""The token-level cringe term shared by Binary Cringe and Pairwise Cringe.

Adolphs et al., "The CRINGE Loss: Learning what language not to model", ACL 2023
(arXiv:2211.05826). At a position t with bad token y_t and logits z_t:

1. take the top k+1 logits of z_t, drop y_t if it is among them, else drop the (k+1)-th,
   which leaves exactly k candidates, none of them y_t;
2. sample one candidate j from the softmax over those k logits (no gradient);
3. CR_t = softplus(z_t[y_t] - z_t[j]), the two-way cross-entropy that pushes the bad
   token's logit below the sampled one's.

Shapes: P positions (any leading shape, such as (R, T) padded or (M,) packed),
V vocabulary, k = top_k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cringe_core.losses.logps import gather_with_logsumexp


def sample_cringe_candidates(
    logits: torch.Tensor,
    labels: torch.Tensor,
    top_k: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Sample one positive token per position among the top-k candidates that are not the label.

    logits: (..., V); labels: (...) long, the bad tokens. Returns (...) long token ids.

    Sampling is inverse-CDF with one uniform draw per position,
    `u = torch.rand(labels.shape, generator=generator, dtype=torch.float64)`. The draws are made
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
        top_logits, top_ids = logits.topk(top_k + 1, dim=-1)  # (..., k+1)

        # Drop the label's column when the label is among the top k+1, else the last one.
        is_label = top_ids == labels.unsqueeze(-1)  # (..., k+1)
        drop_column = torch.where(
            is_label.any(dim=-1), is_label.int().argmax(dim=-1), top_k
        )  # (...)
        columns = torch.arange(top_k + 1, device=logits.device)
        keep = columns != drop_column.unsqueeze(-1)  # (..., k+1), exactly k True per position
        candidate_shape = (*labels.shape, top_k)
        candidate_ids = top_ids[keep].view(candidate_shape)  # (..., k)
        candidate_logits = top_logits[keep].view(candidate_shape)  # (..., k)

        # Inverse-CDF sampling from the softmax over the k candidates.
        probabilities = torch.softmax(_widen(candidate_logits), dim=-1)  # (..., k)
        cdf = probabilities.cumsum(dim=-1)  # (..., k)
        uniform = _uniform(labels.shape, generator, logits.device)  # (...) float64
        choice = (cdf < uniform.unsqueeze(-1)).sum(dim=-1).clamp(max=top_k - 1)  # (...)
        return candidate_ids.gather(-1, choice.unsqueeze(-1)).squeeze(-1)  # (...)


def logps_and_cringe(
    logits: torch.Tensor,
    labels: torch.Tensor,
    bad: torch.Tensor,
    top_k: int,
    generator: torch.Generator | None,
    detach_positive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute per-token log-probs everywhere and CR_t at the bad tokens, in one pass.

    logits: (M, V) packed; labels: (M,) long; bad: (M,) bool, the tokens the cringe term
    pushes down. Returns `per_token_logps` (M,) and `cringe` (M,), zero where `bad` is
    False, both in float32 (float64 for float64 logits).

    CR_t = softplus(z_t[y_t] - z_t[j]) with j drawn by `sample_cringe_candidates`, one
    uniform per bad token, in packed order. `detach_positive` stops the gradient into the
    sampled logit z_t[j], so only the bad token's logit is pushed down. The log-probs and
    both logits come from one `gather_with_logsumexp`, whose backward pass writes one
    gradient of the logits' size.
    """
    bad_index = bad.nonzero().squeeze(-1)  # (M_b,)
    sampled_ids = labels.clone()  # (M,); the label itself where no candidate is drawn
    if bad_index.numel():
        sampled_ids[bad_index] = sample_cringe_candidates(
            _rows(logits.detach(), bad_index), labels[bad_index], top_k, generator
        )

    ids = torch.stack([labels, sampled_ids], dim=-1)  # (M, 2)
    gathered, logsumexp = gather_with_logsumexp(logits, ids)  # (M, 2), (M,)
    negative, positive = gathered.unbind(dim=-1)  # (M,), (M,)
    if detach_positive:
        positive = positive.detach()
    cringe = F.softplus(negative - positive) * bad  # (M,)
    return negative - logsumexp, cringe


def cringe_token_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    top_k: int,
    generator: torch.Generator | None,
    detach_positive: bool = False,
) -> torch.Tensor:
    """Compute CR_t = softplus(z_t[y_t] - z_t[j]) at every position, with j sampled.

    logits: (..., V); labels: (...) long, the bad tokens. Returns (...) in float32, or
    float64 for float64 logits. Every position is computed; the losses call
    `logps_and_cringe` on their bad tokens instead.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (P, V)
    flat_labels = labels.reshape(-1)  # (P,)
    every = torch.ones_like(flat_labels, dtype=torch.bool)  # (P,)
    _, cringe = logps_and_cringe(flat_logits, flat_labels, every, top_k, generator, detach_positive)
    return cringe.view(labels.shape)


def _rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select rows by sorted index; a contiguous run (the rejected rows of a pairwise
    batch) is a view, which saves copying (M_b, V) logits."""
    first, last = int(index[0]), int(index[-1])
    if last - first + 1 == index.numel():
        return values[first : last + 1]
    return values.index_select(0, index)


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
