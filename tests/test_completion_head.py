"""The LM head run only at completion positions equals the full forward pass, family by family."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from peft import LoraConfig, PromptTuningConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
    Qwen3Config,
)

from cringe_core.models.completion_head import (
    PLAIN_HEAD_MODEL_TYPES,
    CompletionLogits,
    as_completion_logits,
)

VOCAB = 96
DECODER_SIZES = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "pad_token_id": 0,
}

PLAIN_CONFIGS: dict[str, PretrainedConfig] = {
    "llama": LlamaConfig(**DECODER_SIZES),
    "mistral": MistralConfig(**DECODER_SIZES),
    "qwen2": Qwen2Config(**DECODER_SIZES),
    "qwen3": Qwen3Config(**DECODER_SIZES, head_dim=8),
    "gpt2": GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64),
}


def build(config: PretrainedConfig, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).double().eval()


def padded_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask (4, 10) with right padding, and a shifted mask (4, 9)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB, (4, 10), generator=generator)
    attention_mask = torch.ones(4, 10, dtype=torch.long)
    for row, length in enumerate((10, 7, 5, 9)):
        attention_mask[row, length:] = 0
        input_ids[row, length:] = 0
    positions = torch.zeros(4, 9, dtype=torch.bool)
    for row, (start, stop) in enumerate(((3, 9), (2, 6), (1, 4), (4, 8))):
        positions[row, start:stop] = True
    return input_ids, attention_mask, positions


def full_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def test_every_plain_family_is_checked_here() -> None:
    assert set(PLAIN_CONFIGS) == PLAIN_HEAD_MODEL_TYPES


@pytest.mark.parametrize("model_type", sorted(PLAIN_CONFIGS))
def test_split_head_equals_full_forward(model_type: str) -> None:
    model = build(PLAIN_CONFIGS[model_type])
    input_ids, attention_mask, positions = padded_batch(seed=1)
    head_model = CompletionLogits(model)
    assert head_model.splits_head

    # The head's input has only the M selected positions.
    head_rows: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda _module, args, _output: head_rows.append(args[0].shape[0])
    )
    packed = head_model(input_ids, attention_mask, positions)  # (M, V)
    hook.remove()
    assert head_rows == [int(positions.sum())]

    expected = full_logits(model, input_ids, attention_mask)[:, :-1][positions]  # (M, V)
    torch.testing.assert_close(packed, expected, rtol=1e-12, atol=1e-12)

    # The gradients of every parameter agree too.
    weights = torch.randn(
        packed.shape, generator=torch.Generator().manual_seed(2), dtype=packed.dtype
    )
    (packed * weights).sum().backward()
    split_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    (full_logits(model, input_ids, attention_mask)[:, :-1][positions] * weights).sum().backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(split_grads[name], parameter.grad, rtol=1e-10, atol=1e-12)


def test_soft_capped_family_runs_its_full_forward() -> None:
    config = Gemma2Config(**DECODER_SIZES, head_dim=8, final_logit_softcapping=5.0)
    model = build(config)
    input_ids, attention_mask, positions = padded_batch(seed=3)
    head_model = CompletionLogits(model)
    assert not head_model.splits_head

    packed = head_model(input_ids, attention_mask, positions)
    expected = full_logits(model, input_ids, attention_mask)[:, :-1][positions]
    torch.testing.assert_close(packed, expected, rtol=1e-12, atol=1e-12)
    # Control: the cap is active, so the backbone-then-head split would differ.
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    uncapped = model.get_output_embeddings()(hidden[:, :-1][positions])
    assert not torch.allclose(uncapped, expected)


def test_lora_model_splits_through_its_adapters() -> None:
    model = get_peft_model(
        build(PLAIN_CONFIGS["llama"]),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    # Nonzero adapter weights, so that a head path that skipped them would differ.
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    input_ids, attention_mask, positions = padded_batch(seed=4)
    head_model = CompletionLogits(model)
    assert head_model.splits_head

    packed = head_model(input_ids, attention_mask, positions)
    expected = full_logits(model, input_ids, attention_mask)[:, :-1][positions]
    torch.testing.assert_close(packed, expected, rtol=1e-12, atol=1e-12)


def test_wrapping_is_done_once() -> None:
    model = build(PLAIN_CONFIGS["gpt2"])
    head_model = as_completion_logits(model)
    assert isinstance(head_model, CompletionLogits)
    assert as_completion_logits(head_model) is head_model
    # The wrapper adds no parameters of its own and registers each one once.
    assert list(head_model.parameters()) == list(model.parameters())


def test_prompt_learning_adapter_rejected() -> None:
    model = get_peft_model(
        build(PLAIN_CONFIGS["llama"]),
        PromptTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM"),
    )
    with pytest.raises(ValueError, match=r"prompt-learning adapters .* use a LoRA adapter"):
        CompletionLogits(model)
