"""A causal language model that computes its LM head only at the positions a loss scores.

Preference losses read the logits at completion tokens only. A causal LM's own forward
pass projects every position, prompt and padding included, onto the vocabulary. With
SmolLM2's 49,152 tokens that projection is about a fifth of the forward FLOPs, and its
(N, T, V) output and gradient are the largest tensors of a training step. This wrapper
runs the model's backbone over the whole batch, selects the hidden states at the
scored positions, and projects only those.

The backbone-then-head split is exact only for families whose head is a plain
projection of the last hidden state. Families that scale or cap the logits inside their
own forward pass (Gemma 2's soft-capping, Cohere's logit scale, Granite's divisor) would
get wrong logits. So only the families listed in `PLAIN_HEAD_MODEL_TYPES` take the split.
Every other model runs its full forward pass, and the logits are selected afterwards.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Model types whose logits are `lm_head(last_hidden_state)` with nothing applied after.
# Each one is checked against its full forward pass in the tests.
PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt2"})


class CompletionLogits(nn.Module):
    """Wrap a causal LM so that its forward pass returns logits at selected positions only.

    `forward(input_ids, attention_mask, positions)` takes the (N, T) batch and an
    (N, T-1) bool `positions` mask, True where the logits at t score the token at t + 1
    (the shifted completion mask). It returns packed logits (M, V), M = positions.sum(),
    in row-major order, which is the order of `tensor[positions]`.

    The wrapped model is a registered submodule, so DistributedDataParallel can wrap
    this module and see the same parameters. A PEFT model with adapters in its layers
    (LoRA) is unwrapped to its base model, whose layers contain the adapters. A PEFT model
    that learns virtual prompt tokens is rejected: its own forward pass adds positions,
    which would shift every logit against its label.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        if _learns_prompt_tokens(model):
            raise ValueError(
                "PEFT prompt-learning adapters (prompt, prefix or p-tuning) are not "
                "supported for training; use a LoRA adapter (model.lora) instead"
            )
        # A tuple, so that the backbone and head are not registered a second time as
        # submodules of this module (they already are, under `model`).
        self._split = _backbone_and_head(
            model.get_base_model() if hasattr(model, "get_base_model") else model
        )

    @property
    def splits_head(self) -> bool:
        """Whether the LM head runs only at the selected positions."""
        return self._split is not None

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        if self._split is None:
            outputs = self.model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            )
            return outputs.logits[:, :-1][positions]  # (N, T-1, V) -> (M, V)

        backbone, head = self._split
        outputs = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden = outputs.last_hidden_state[:, :-1][positions]  # (N, T-1, H) -> (M, H)
        logits: torch.Tensor = head(hidden)  # (M, V)
        return logits


def as_completion_logits(model: Any) -> Any:
    """Return `model` itself when it already is (or wraps) CompletionLogits, else wrap it.

    A model wrapped in DistributedDataParallel is returned unchanged when its `module` is
    CompletionLogits, so the forward pass still goes through DDP.
    """
    if isinstance(model, CompletionLogits) or isinstance(
        getattr(model, "module", None), CompletionLogits
    ):
        return model
    return CompletionLogits(model)


def _learns_prompt_tokens(model: Any) -> bool:
    """Check for a PEFT prompt-learning adapter (prompt, prefix or p-tuning)."""
    configs = getattr(model, "peft_config", None)
    active = getattr(model, "active_adapter", None)
    if not isinstance(configs, dict) or not isinstance(active, str) or active not in configs:
        return False
    return bool(getattr(configs[active], "is_prompt_learning", False))


def _backbone_and_head(model: Any) -> tuple[Any, Any] | None:
    """Return (backbone, head) when the model's logits are a plain head projection."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_MODEL_TYPES:
        return None
    backbone = getattr(model, "base_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if backbone is None or backbone is model or not isinstance(head, nn.Module):
        return None
    return backbone, head
