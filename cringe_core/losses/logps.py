"""Token and sequence log-probabilities, computed in float32 or wider.

Shapes: N rows (2B for pairs), T positions, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch

# Positions per chunk are chosen so that one float32 chunk of logits has about this many
# elements (64 MiB), whatever the vocabulary size.
_CHUNK_ELEMENTS = 2**24


def per_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Compute `log softmax(logits)[label]` at every position.

    logits: (N, T, V) float of any precision; labels: (N, T) long, each in [0, V).
    Returns (N, T) in float32, or float64 for float64 logits.

    Float64 logits use `gather - logsumexp` directly. Float32 logits go through
    `_Float32TokenLogps`, whose backward pass computes the softmax only at positions with a
    nonzero incoming gradient (completion tokens, once a mask is applied). Half-precision
    logits go through `_LowPrecisionTokenLogps`, which upcasts one chunk of positions at a
    time, so neither the forward nor the backward pass keeps a float32 copy of all the
    logits.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree; "
            "logits must be (N, T, V) and labels (N, T)"
        )

    if logits.dtype == torch.float64:
        target_logits = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (N, T)
        return target_logits - torch.logsumexp(logits, dim=-1)  # (N, T)
    if logits.dtype == torch.float32:
        float32_result: torch.Tensor = _Float32TokenLogps.apply(logits, labels)
        return float32_result

    result: torch.Tensor = _LowPrecisionTokenLogps.apply(logits, labels)
    return result


def sequence_logps(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum per-token log-probs over the positions where `mask` is True: (N, T) -> (N,)."""
    return (per_token * mask).sum(dim=-1)


def completion_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Count completion tokens per row, at least 1 so that it can divide: (N, T) -> (N,)."""
    return mask.sum(dim=-1).clamp(min=1)


def _chunk_positions(vocab_size: int) -> int:
    return max(1, _CHUNK_ELEMENTS // vocab_size)


def _rows_gradient(
    rows: torch.Tensor, logsumexp: torch.Tensor, labels: torch.Tensor, grad: torch.Tensor
) -> torch.Tensor:
    """Compute `grad * (one_hot(label) - softmax(rows))`, the gradient of token log-probs.

    rows: (R, V) logits of any float dtype; logsumexp, labels, grad: (R,). Returns (R, V)
    in float32, or float64 for float64 rows.
    """
    gradient = torch.exp(rows.float() - logsumexp[:, None])  # (R, V), the softmax
    gradient.mul_(-grad[:, None])
    gradient.scatter_add_(-1, labels[:, None], grad[:, None])
    return gradient


class _Float32TokenLogps(torch.autograd.Function):
    """Token log-probs of float32 logits, with a backward pass over active positions only.

    The gradient `grad * (one_hot(label) - softmax(logits))` is zero wherever the incoming
    gradient is zero, which is every prompt and padding position once the caller has
    multiplied by the completion mask. Autograd's own backward of `gather - logsumexp`
    builds two dense (N, T, V) tensors and adds them. This one fills one buffer of zeros
    and computes the softmax only at the M active positions.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logsumexp = torch.logsumexp(logits, dim=-1)  # (N, T)
        target_logits = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (N, T)
        ctx.save_for_backward(logits, labels, logsumexp)
        return target_logits - logsumexp  # (N, T)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, labels, logsumexp = ctx.saved_tensors
        vocab_size = logits.shape[-1]
        flat_logits = logits.reshape(-1, vocab_size)  # (N*T, V)
        flat_grad = grad_output.reshape(-1)  # (N*T,)
        active = flat_grad.nonzero().squeeze(-1)  # (M,)
        grad_logits = torch.zeros_like(flat_logits)  # (N*T, V)
        if active.numel():
            active_grad_logits = _rows_gradient(  # (M, V)
                flat_logits.index_select(0, active), logsumexp.reshape(-1)[active],
                labels.reshape(-1)[active], flat_grad[active],
            )
            grad_logits.index_copy_(0, active, active_grad_logits)
        return grad_logits.view(logits.shape), None


class _LowPrecisionTokenLogps(torch.autograd.Function):
    """Token log-probs of half-precision logits with float32 arithmetic, chunk by chunk.

    The forward pass stores the original logits and the float32 logsumexp (N, T); the
    backward pass recomputes the softmax chunk by chunk. The gradient is
    `grad * (one_hot(label) - softmax(logits))`, returned in the logits' dtype.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        vocab_size = logits.shape[-1]
        flat_logits = logits.reshape(-1, vocab_size)  # (N*T, V)
        flat_labels = labels.reshape(-1)  # (N*T,)
        logsumexp = torch.empty(flat_labels.shape, dtype=torch.float32, device=logits.device)
        step = _chunk_positions(vocab_size)
        for start in range(0, flat_logits.shape[0], step):
            chunk = flat_logits[start : start + step].float()  # (C, V)
            logsumexp[start : start + step] = torch.logsumexp(chunk, dim=-1)

        # Gathering a bf16 or fp16 value and widening it is exact.
        target_logits = flat_logits.gather(-1, flat_labels.unsqueeze(-1)).squeeze(-1).float()
        ctx.save_for_backward(logits, labels, logsumexp)
        return (target_logits - logsumexp).view(labels.shape)  # (N, T)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, labels, logsumexp = ctx.saved_tensors
        vocab_size = logits.shape[-1]
        flat_logits = logits.reshape(-1, vocab_size)  # (N*T, V)
        flat_labels = labels.reshape(-1)  # (N*T,)
        flat_grad = grad_output.reshape(-1).float()  # (N*T,)
        grad_logits = torch.empty_like(flat_logits)
        step = _chunk_positions(vocab_size)
        for start in range(0, flat_logits.shape[0], step):
            stop = start + step
            chunk_grad = _rows_gradient(  # (C, V)
                flat_logits[start:stop], logsumexp[start:stop], flat_labels[start:stop],
                flat_grad[start:stop],
            )
            grad_logits[start:stop] = chunk_grad.to(logits.dtype)
        return grad_logits.view(logits.shape), None
