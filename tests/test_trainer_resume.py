"""The trainer's invariance: an interrupted and resumed run equals an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from cringe_core.spec import parse_spec
from cringe_core.training.checkpoint import TrainerState, load_checkpoint, save_checkpoint
from cringe_core.training.trainer import Trainer
from tests.conftest import ALPACA_EVAL


def _spec(model: Path, loss: dict, max_steps: int = 6) -> object:
    return parse_spec(
        {
            "model": {"name": str(model)},
            "dataset": {
                "path": str(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz"),
                "max_rows": 24,
            },
            "loss": loss,
            "training": {
                "max_steps": max_steps,
                "batch_size": 2,
                "micro_batch_size": 1,
                "learning_rate": 1e-3,
                "warmup_steps": 2,
                "max_length": 96,
            },
            "seed": 7,
        }
    )


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "model.safetensors")


@pytest.mark.parametrize(
    "loss",
    [
        {"name": "pairwise_cringe"},
        {"name": "binary_cringe", "top_k": 3},
        {"name": "dpo"},
    ],
    ids=lambda loss: loss["name"],
)
def test_resume_equals_uninterrupted_run(
    tiny_policy_path: Path, tmp_path: Path, loss: dict
) -> None:
    spec = _spec(tiny_policy_path, loss)
    whole = tmp_path / "whole"
    Trainer(spec, whole, device=torch.device("cpu")).run()

    split = tmp_path / "split"
    first = Trainer(spec, split, device=torch.device("cpu")).run(should_stop=lambda step: step == 3)
    assert first.steps == 3
    assert json.loads((split / "status.json").read_text())["state"] == "stopped"
    second = Trainer(spec, split, device=torch.device("cpu")).run(resume=True)
    assert second.steps == 6

    expected, actual = _weights(whole), _weights(split)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, msg=name)


def test_resume_keeps_metric_series_continuous(tiny_policy_path: Path, tmp_path: Path) -> None:
    spec = _spec(tiny_policy_path, {"name": "pairwise_cringe"})
    Trainer(spec, tmp_path, device=torch.device("cpu")).run(should_stop=lambda step: step == 4)
    Trainer(spec, tmp_path, device=torch.device("cpu")).run(resume=True)

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_training_changes_weights(tiny_policy_path: Path, tmp_path: Path) -> None:
    spec = _spec(tiny_policy_path, {"name": "pairwise_cringe"}, max_steps=2)
    Trainer(spec, tmp_path, device=torch.device("cpu")).run()
    before = load_file(tiny_policy_path / "model.safetensors")
    after = _weights(tmp_path)
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed, "no parameter changed after two optimizer steps"


def test_resume_keeps_fused_optimizer(tmp_path: Path) -> None:
    # A checkpoint written with the foreach kernel must not switch off the fused one.
    config = LlamaConfig(
        vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    old = torch.optim.AdamW(model.parameters(), lr=0.1, foreach=True)
    old.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(old, lambda step: 1.0)
    folder = save_checkpoint(tmp_path, model, old, scheduler, TrainerState(1, 2, 0))

    fused = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    load_checkpoint(folder, model, fused, torch.optim.lr_scheduler.LambdaLR(fused, lambda s: 1.0))
    assert all(group["fused"] for group in fused.param_groups)
    assert not any(group["foreach"] for group in fused.param_groups)
    # The saved state itself is restored.
    assert fused.state_dict()["state"][0]["step"] == old.state_dict()["state"][0]["step"]
