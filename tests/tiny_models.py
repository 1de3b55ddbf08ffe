"""Tiny random reward models with real tokenizers, for fast tests.

`save_tiny_bert_reward` pairs a two-layer BERT classifier with the MiniLM tokenizer, which
has no chat template and so encodes sentence pairs. `save_tiny_llama_reward` pairs a
two-layer Llama classifier with SmolLM2's tokenizer, whose pad token is also its
end-of-turn token.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from cringe_core.models.reward import MINILM_ALIAS, resolve_reward_model_path


def save_tiny_bert_reward(folder: Path, seed: int = 0) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(resolve_reward_model_path(MINILM_ALIAS))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_llama_reward(folder: Path, tokenizer_source: Path, seed: int = 0) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
