"""Real models on real data: SmolLM2 generation, and the MiniLM reward model judging it.

Minutes on a CPU; `benchmarks/eval_real.py` runs the full-size version of the same path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cringe_core.data.prompts import read_prompts
from cringe_core.evaluation.job import evaluate
from cringe_core.generation import generate_completions
from cringe_core.reward.trainer import RewardTrainer
from cringe_core.spec import EvaluateJobSpec, GenerationSpec, RewardModelJobSpec, parse_spec
from tests.conftest import ALPACA_EVAL, SHARED_DATA

EVAL_SET = SHARED_DATA / "alpaca-farm" / "eval_gpt-3.5-turbo-0301.json"

pytestmark = pytest.mark.slow


def test_smollm2_batched_greedy_equals_single(smollm2_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    prompts = [record.prompt for record in read_prompts(EVAL_SET, max_rows=3)]
    settings = GenerationSpec(max_new_tokens=24, batch_size=3)
    batched = generate_completions(model, tokenizer, prompts, settings)
    for index, prompt in enumerate(prompts):
        alone = generate_completions(model, tokenizer, [prompt], settings)[0]
        assert batched[index].token_ids == alone.token_ids, f"prompt {index}"
    assert all(completion.text.strip() for completion in batched)


def test_minilm_reward_model_judges_smollm2(smollm2_path: Path, tmp_path: Path) -> None:
    reward_spec = parse_spec(
        {
            "kind": "reward_model",
            "dataset": {
                "path": str(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz"),
                "max_rows": 120,
            },
            "training": {"max_steps": 4, "batch_size": 8, "micro_batch_size": 8},
            "eval_fraction": 0.1,
        }
    )
    assert isinstance(reward_spec, RewardModelJobSpec)
    run = tmp_path / "reward"
    trained = RewardTrainer(reward_spec, run, device=torch.device("cpu")).run()
    split = json.loads((run / "split.json").read_text())
    assert trained.heldout is not None
    assert trained.heldout["pairs"] == split["heldout_pairs"]
    assert split["heldout_pairs"] == 12

    eval_spec = parse_spec(
        {
            "kind": "evaluate",
            "eval_set": {"path": str(EVAL_SET), "heldout_from": str(run), "max_prompts": 3},
            "judge": {"name": str(run / "model"), "max_length": 256},
            "generation": {"max_new_tokens": 24, "batch_size": 3},
        }
    )
    assert isinstance(eval_spec, EvaluateJobSpec)
    results = evaluate(eval_spec, tmp_path / "eval", torch.device("cpu"))
    candidate = results["candidates"][0]
    assert candidate["n"] == 3
    assert candidate["wins"] + candidate["ties"] + candidate["losses"] == 3
    assert math.isfinite(candidate["mean_reward"])
    assert math.isfinite(candidate["mean_reference_reward"])
