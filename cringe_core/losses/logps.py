"""Token and sequence log-probabilities, computed in float32 or wider.

Logits come either padded, (N, T, V) with an (N, T) label per position, or packed,
(M, V) with one label per completion token (see `cringe_core.losses.packing`). Every
function here takes any leading shape: logits (..., V) with labels (...).
"""

from __future__ import annotations

from typing import Any

import torch

# Positions per chunk are chosen so that one float32 chunk of logits has about this many
# elements, whatever the vocabulary size. On CPUs, 4 MiB: on 870 x 49,152 logits on the
# 2-core CPU, the forward and backward pass took 127 ms with these chunks and 163 ms with
# 64 MiB ones. Our guess at the reason: small temporaries are reused from the heap and
# stay in cache, while large ones are mapped and faulted in afresh each time. On GPUs,
# 64 MiB, so that each kernel launch has enough work (not measured).
_CHUNK_ELEMENTS = 2**20
_CHUNK_ELEMENTS_GPU = 2**24


def per_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Compute `log softmax(logits)[label]` at every position.

    logits: (..., V) float of any precision; labels: (...) long, each in [0, V).
    Returns (...) in float32, or float64 for float64 logits.
    """
    gathered, logsumexp = gather_with_logsumexp(logits, labels.unsqueeze(-1))
    return gathered.squeeze(-1) - logsumexp


def gather_with_logsumexp(
    logits: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather K logits per position and compute the log-sum-exp over the vocabulary.

    logits: (..., V) float of any precision; ids: (..., K) long, each in [0, V).
    Returns `gathered` (..., K) and `logsumexp` (...), both in float32, or float64 for
    float64 logits, and both differentiable. A log-prob is `gathered - logsumexp`. The
    cringe term needs the raw logits, so both are returned.

    Both come from one autograd function whose backward pass fills one gradient buffer of
    the logits' size: `grad_logsumexp * softmax(logits)` plus each gathered value's
    gradient at its id. Autograd through separate `gather` and `logsumexp` calls would
    build one dense gradient per call and add them. The softmax is computed one chunk of
    positions at a time, and only at positions whose log-sum-exp gets a gradient.
    """
    if logits.shape[:-1] != ids.shape[:-1]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and ids {tuple(ids.shape)} disagree; "
            "logits must be (..., V) and ids (..., K) with the same leading shape"
        )
    gathered, logsumexp = _GatherLogSumExp.apply(logits, ids)
    return gathered, logsumexp


def completion_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Count completion tokens per row, at least 1 so that it can divide: (N, T) -> (N,)."""
    return mask.sum(dim=-1).clamp(min=1)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _chunk_positions(vocab_size: int, device: torch.device) -> int:
    elements = _CHUNK_ELEMENTS if device.type == "cpu" else _CHUNK_ELEMENTS_GPU
    return max(1, elements // vocab_size)


class _GatherLogSumExp(torch.autograd.Function):
    """Gathered logits and log-sum-exp, with a single-buffer, chunked backward pass.

    The forward pass keeps the original logits and the (P,) log-sum-exp, never a widened
    copy of all the logits: half-precision logits are upcast one chunk at a time. The
    gradient is returned in the logits' dtype.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        vocab_size = logits.shape[-1]
        flat_logits = logits.reshape(-1, vocab_size)  # (P, V)
        flat_ids = ids.reshape(flat_logits.shape[0], ids.shape[-1])  # (P, K), P may be 0
        dtype = _compute_dtype(logits.dtype)
        logsumexp = torch.empty(flat_logits.shape[0], dtype=dtype, device=logits.device)
        step = _chunk_positions(vocab_size, logits.device)
        for start in range(0, flat_logits.shape[0], step):
            chunk = flat_logits[start : start + step].to(dtype)  # (C, V)
            torch.logsumexp(chunk, dim=-1, out=logsumexp[start : start + step])

        # Widening a gathered bf16 or fp16 value is exact.
        gathered = flat_logits.gather(-1, flat_ids).to(dtype)  # (P, K)
        ctx.save_for_backward(logits, ids, logsumexp)
        return gathered.view(ids.shape), logsumexp.view(ids.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_gathered: torch.Tensor, grad_logsumexp: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        logits, ids, logsumexp = ctx.saved_tensors
        vocab_size = logits.shape[-1]
        flat_logits = logits.reshape(-1, vocab_size)  # (P, V)
        flat_ids = ids.reshape(flat_logits.shape[0], ids.shape[-1])  # (P, K)
        dtype = logsumexp.dtype
        flat_grad_lse = grad_logsumexp.reshape(-1).to(dtype)  # (P,)
        flat_grad_gathered = grad_gathered.reshape(flat_ids.shape).to(dtype)  # (P, K)

        grad_logits = torch.empty_like(flat_logits)  # (P, V), in the logits' dtype
        # One check for the whole batch, so that the usual case, where every position has
        # a gradient, needs no host synchronization per chunk on a GPU.
        every_row_active = bool((flat_grad_lse != 0).all())
        # Float32 and float64 chunks are computed in place in the result. Half-precision
        # ones are computed in a float32 chunk that is then narrowed.
        same_dtype = grad_logits.dtype == dtype
        step = _chunk_positions(vocab_size, logits.device)
        for start in range(0, flat_logits.shape[0], step):
            stop = start + step
            if same_dtype:
                chunk = grad_logits[start:stop]  # (C, V)
            else:
                chunk = torch.empty(
                    grad_logits[start:stop].shape, dtype=dtype, device=logits.device
                )
            _softmax_times(
                flat_logits[start:stop],
                logsumexp[start:stop],
                flat_grad_lse[start:stop],
                chunk,
                every_row_active,
            )
            chunk.scatter_add_(-1, flat_ids[start:stop], flat_grad_gathered[start:stop])
            if not same_dtype:
                grad_logits[start:stop] = chunk
        return grad_logits.view(logits.shape), None


def _softmax_times(
    logits: torch.Tensor,
    logsumexp: torch.Tensor,
    grad: torch.Tensor,
    out: torch.Tensor,
    every_row_active: bool,
) -> None:
    """Write `grad * softmax(logits)` into `out`, row by row: (C, V), (C,), (C,) -> (C, V).

    Unless `every_row_active`, rows with a zero `grad` are written as zeros without
    computing their softmax. In a packed batch these are the rejected rows when no
    gradient flows through their log-probs (a detached gate), or the bad rows of binary
    cringe. When called directly on padded logits, they are also the prompt and padding
    positions.
    """
    if every_row_active:
        torch.sub(logits.to(out.dtype), logsumexp[:, None], out=out)
        out.exp_().mul_(grad[:, None])
        return
    active = grad.nonzero().squeeze(-1)  # (A,)
    out.zero_()
    if active.numel():
        rows = torch.exp(logits.index_select(0, active).to(out.dtype) - logsumexp[active, None])
        out.index_copy_(0, active, rows.mul_(grad[active, None]))
