"""Train the real SmolLM2-135M-Instruct on real AlpacaEval judgements."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from cringe_core.data.check import prepare_dataset
from cringe_core.evaluation.policy_preference import policy_preference
from cringe_core.models.loading import SMOLLM2_ALIAS, load_tokenizer
from cringe_core.spec import parse_spec
from cringe_core.training.trainer import Trainer
from tests.conftest import ALPACA_EVAL


def test_pairwise_cringe_raises_margin_on_real_model(smollm2_path: Path, tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "model": {"name": SMOLLM2_ALIAS},
            "dataset": {
                "path": str(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz"),
                "max_rows": 4,
            },
            "loss": {"name": "pairwise_cringe"},
            "training": {
                "max_steps": 3,
                "batch_size": 2,
                "micro_batch_size": 1,
                "learning_rate": 2e-5,
                "max_length": 128,
            },
            "seed": 0,
        }
    )
    tokenizer = load_tokenizer(SMOLLM2_ALIAS)
    pairs, _ = prepare_dataset(spec.dataset, tokenizer, spec.training.max_length)
    pad = tokenizer.pad_token_id

    start = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    before = policy_preference(start, pairs, pad, batch_size=4)
    del start

    result = Trainer(spec, tmp_path, device=torch.device("cpu")).run()
    trained = AutoModelForCausalLM.from_pretrained(result.model_dir, dtype=torch.float32)
    after = policy_preference(trained, pairs, pad, batch_size=4)

    assert not getattr(trained, "is_quantized", False)
    assert after.mean_margin > before.mean_margin, (before.mean_margin, after.mean_margin)
