"""Fixtures shared by the whole suite: the real data folder and small models."""

from __future__ import annotations

import os
import platform
import secrets
from pathlib import Path

import pytest
import torch

# Every Ray in this test process uses token authentication with one token. Ray reads
# RAY_AUTH_MODE and RAY_AUTH_TOKEN once, when this process first uses it, so they are set
# here, before any test module imports ray. Service processes the tests start set their
# own.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ALPACA_EVAL = SHARED_DATA / "alpaca-eval-annotations"


def glibc_with_mallinfo2() -> bool:
    """Check for glibc 2.33 or later, which has the mallinfo2 heap statistics."""
    name, version = platform.libc_ver()
    return name == "glibc" and tuple(int(part) for part in version.split(".")[:2]) >= (2, 33)


def env_without_training_vars() -> dict[str, str]:
    """Return this environment without the variables training processes start with."""
    from cringe_core.process_env import THREAD_MALLOC_ENV, TRAINING_ENV

    names = {*TRAINING_ENV, *THREAD_MALLOC_ENV}
    return {name: value for name, value in os.environ.items() if name not in names}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"the real data folder {SHARED_DATA} is missing; check out shared/ beside the repo"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M-Instruct, converted from the packaged GGUF once per cache."""
    from cringe_core.models.loading import SMOLLM2_ALIAS, resolve_model_path

    return Path(resolve_model_path(SMOLLM2_ALIAS))


@pytest.fixture(scope="session")
def tiny_policy_path(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    """A randomly initialised two-layer Llama with SmolLM2's tokenizer and chat template.

    Small enough for a training step in well under a second, yet it tokenizes real data
    exactly as the real model does.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-policy")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
