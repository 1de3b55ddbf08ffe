"""Reward-model training: Bradley-Terry loss, the split by prompt, and a whole run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cringe_core.data.defects import DataError
from cringe_core.data.records import PreferenceRecord
from cringe_core.evaluation.reward_preference import reward_preference
from cringe_core.models.reward import load_reward_model, load_reward_tokenizer
from cringe_core.reward.data import (
    prompt_key,
    read_heldout_prompt_keys,
    read_preference_sets,
    split_by_prompt,
)
from cringe_core.reward.loss import bradley_terry_loss
from cringe_core.reward.scoring import RewardScorer
from cringe_core.reward.trainer import RewardTrainer
from cringe_core.spec import DatasetSpec, LoraSpec, ModelSpec, RewardModelJobSpec, parse_spec
from tests.tiny_models import save_tiny_bert_reward

TOPICS = ["rivers", "bread", "stars", "chess", "rain", "bees", "glass", "trains", "salt", "owls"]


def write_pairs(path: Path, copies: int = 1) -> Path:
    """Pairs where the chosen answer is always the long, on-topic one."""
    rows = []
    for _ in range(copies):
        for index, topic in enumerate(TOPICS * 4):
            rows.append(
                {
                    "prompt": f"Question {index}: tell me something about {topic}.",
                    "chosen": f"Here is a clear and helpful explanation about {topic}.",
                    "rejected": "no",
                }
            )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _record(prompt: str, row: int) -> PreferenceRecord:
    return PreferenceRecord(
        prompt=[{"role": "user", "content": prompt}], chosen="good", rejected="bad", row=row
    )


def test_bradley_terry_loss_by_hand() -> None:
    chosen = torch.tensor([1.0, 0.0, 2.0])
    rejected = torch.tensor([0.0, 0.0, 3.0])
    loss, metrics = bradley_terry_loss(chosen, rejected, normalizer=4)
    # -log sigmoid(1) = 0.31326, -log sigmoid(0) = 0.69315, -log sigmoid(-1) = 1.31326
    expected = (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(1))) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["margin/mean"] == pytest.approx(0.0)


def test_bradley_terry_gradient_raises_chosen() -> None:
    chosen = torch.tensor([0.5], requires_grad=True)
    rejected = torch.tensor([0.5], requires_grad=True)
    loss, _ = bradley_terry_loss(chosen, rejected, normalizer=1)
    loss.backward()
    assert chosen.grad is not None and float(chosen.grad) == pytest.approx(-0.5)
    assert rejected.grad is not None and float(rejected.grad) == pytest.approx(0.5)


def test_split_keeps_each_prompt_on_one_side() -> None:
    # Two files share the same 20 prompts, as AlpacaEval judgement files do.
    records = [_record(f"prompt {i % 20}", i) for i in range(40)]
    split = split_by_prompt(records, eval_fraction=0.25, seed=3)
    train_keys = {prompt_key(r.prompt) for r in split.train}
    heldout_keys = {prompt_key(r.prompt) for r in split.heldout}
    assert not train_keys & heldout_keys
    assert len(heldout_keys) == 5
    assert len(split.heldout) == 10
    assert len(split.train) == 30


def test_split_ignores_record_order() -> None:
    records = [_record(f"prompt {i}", i) for i in range(30)]
    forward = split_by_prompt(records, 0.2, seed=1)
    backward = split_by_prompt(records[::-1], 0.2, seed=1)
    assert forward.heldout_prompts == backward.heldout_prompts


def test_split_changes_with_seed() -> None:
    records = [_record(f"prompt {i}", i) for i in range(30)]
    assert (
        split_by_prompt(records, 0.2, 1).heldout_prompts
        != split_by_prompt(records, 0.2, 2).heldout_prompts
    )


def test_binary_feedback_rejected(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    row = {"prompt": "Hi", "completion": "Hello", "label": True}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="binary feedback"):
        read_preference_sets([DatasetSpec(path=str(path))])


def test_invalid_rows_over_limit_rejected(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "pairs.jsonl")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"prompt": "Hi", "chosen": "", "rejected": "x"}) + "\n")
    with pytest.raises(DataError, match="max_invalid_fraction"):
        read_preference_sets([DatasetSpec(path=str(path))])


def test_single_dataset_mapping_accepted() -> None:
    spec = parse_spec({"kind": "reward_model", "dataset": {"path": "pairs.jsonl"}})
    assert isinstance(spec, RewardModelJobSpec)
    assert spec.dataset[0].path == "pairs.jsonl"
    assert spec.model.name == "minilm-l6-v2"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RewardModelJobSpec]:
    root = tmp_path_factory.mktemp("reward-run")
    backbone = save_tiny_bert_reward(root / "backbone")
    data = write_pairs(root / "pairs.jsonl")
    spec = parse_spec(
        {
            "kind": "reward_model",
            "model": {"name": str(backbone)},
            "dataset": [{"path": str(data)}],
            "training": {
                "max_steps": 25,
                "batch_size": 8,
                "micro_batch_size": 4,
                "learning_rate": 1e-2,
                "warmup_steps": 2,
                "max_length": 48,
            },
            "eval_fraction": 0.25,
        }
    )
    assert isinstance(spec, RewardModelJobSpec)
    output = root / "out"
    RewardTrainer(spec, output, device=torch.device("cpu"), show_progress=False).run()
    return output, spec


def test_training_learns_the_preference(trained_run: tuple[Path, RewardModelJobSpec]) -> None:
    output, _ = trained_run
    heldout = json.loads((output / "eval.json").read_text())["heldout"]
    assert heldout["pairs"] == 10
    assert heldout["accuracy"] == 1.0
    # An untrained head gives margins near 0.01; only training separates the pairs this far.
    assert heldout["mean_margin"] > 2.0


def test_training_writes_run_files(trained_run: tuple[Path, RewardModelJobSpec]) -> None:
    output, _ = trained_run
    assert json.loads((output / "status.json").read_text())["state"] == "succeeded"
    assert (output / "model" / "config.json").is_file()
    assert len((output / "metrics.jsonl").read_text().splitlines()) == 25
    assert len(read_heldout_prompt_keys(output)) == 10


def test_training_loss_falls(trained_run: tuple[Path, RewardModelJobSpec]) -> None:
    output, _ = trained_run
    lines = (output / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["metrics"]["loss"] for line in lines]
    assert losses[0] == pytest.approx(math.log(2), abs=0.02)  # untrained: r_w = r_l
    assert losses[-1] < 0.1


def test_resume_continues_to_max_steps(
    trained_run: tuple[Path, RewardModelJobSpec], tmp_path: Path
) -> None:
    _, spec = trained_run
    short = spec.model_copy(update={"training": spec.training.model_copy(update={"max_steps": 3})})
    RewardTrainer(short, tmp_path, device=torch.device("cpu")).run()
    resumed = RewardTrainer(
        spec.model_copy(update={"training": spec.training.model_copy(update={"max_steps": 5})}),
        tmp_path,
        device=torch.device("cpu"),
    ).run(resume=True)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert resumed.steps == 5
    assert steps == [1, 2, 3, 4, 5]


def _saved_model_margin(output: Path, spec: RewardModelJobSpec) -> float:
    """Score the held-out pairs again with the model the run saved."""
    records = read_preference_sets(spec.dataset).records
    heldout = split_by_prompt(records, spec.eval_fraction, spec.seed).heldout
    tokenizer = load_reward_tokenizer(str(output / "model"))
    model = load_reward_model(ModelSpec(name=str(output / "model")), tokenizer.pad_token_id)
    scorer = RewardScorer(model, tokenizer, max_length=spec.training.max_length)
    return reward_preference(scorer, heldout).mean_margin


def test_saved_model_reproduces_heldout_margin(
    trained_run: tuple[Path, RewardModelJobSpec],
) -> None:
    output, spec = trained_run
    heldout = json.loads((output / "eval.json").read_text())["heldout"]
    assert _saved_model_margin(output, spec) == pytest.approx(heldout["mean_margin"], rel=1e-4)


def test_lora_run_saves_merged_model(
    trained_run: tuple[Path, RewardModelJobSpec], tmp_path: Path
) -> None:
    _, spec = trained_run
    lora_spec = spec.model_copy(
        update={
            "model": spec.model.model_copy(update={"lora": LoraSpec(r=4)}),
            "training": spec.training.model_copy(update={"max_steps": 10}),
        }
    )
    RewardTrainer(lora_spec, tmp_path, device=torch.device("cpu")).run()
    heldout = json.loads((tmp_path / "eval.json").read_text())["heldout"]
    assert "lora" not in (tmp_path / "model" / "config.json").read_text().lower()
    assert _saved_model_margin(tmp_path, lora_spec) == pytest.approx(
        heldout["mean_margin"], rel=1e-4
    )
