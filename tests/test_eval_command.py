"""`cringe eval` and `cringe train` with kind reward_model, run as a user would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cringe_core.cli.main import main
from tests.test_reward_trainer import write_pairs
from tests.tiny_models import save_tiny_bert_reward

INSTRUCTIONS = ["Name a colour.", "Say hello.", "Count to three.", "Name a fruit.", "Spell cat."]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-files")
    eval_set = [
        {"instruction": text, "input": "", "output": f"Reference answer {i}."}
        for i, text in enumerate(INSTRUCTIONS)
    ]
    (root / "eval.json").write_text(json.dumps(eval_set), encoding="utf-8")
    prompts_only = [{"prompt": text} for text in INSTRUCTIONS]
    (root / "prompts.json").write_text(json.dumps(prompts_only), encoding="utf-8")
    return {
        "root": root,
        "eval_set": root / "eval.json",
        "prompts_only": root / "prompts.json",
        "judge": save_tiny_bert_reward(root / "judge"),
        "pairs": write_pairs(root / "pairs.jsonl"),
    }


def _write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _evaluate_spec(files: dict[str, Path], policy: Path, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "evaluate",
        "model": {"name": str(policy)},
        "eval_set": {"path": str(files["eval_set"])},
        "judge": {"name": str(files["judge"]), "max_length": 64},
        "generation": {"max_new_tokens": 6, "batch_size": 2},
        "bootstrap": {"resamples": 200},
        **extra,
    }


def _run_eval(tmp_path: Path, spec: dict[str, Any], *flags: str) -> tuple[int, Path]:
    spec_path = _write_spec(tmp_path / "eval.yaml", spec)
    output = tmp_path / "out"
    code = main(["eval", str(spec_path), "--output-dir", str(output), "--device", "cpu", *flags])
    return code, output


def test_eval_writes_win_rate_and_table(
    files: dict[str, Path], tiny_policy_path: Path, tmp_path: Path, capsys: Any
) -> None:
    code, output = _run_eval(tmp_path, _evaluate_spec(files, tiny_policy_path))
    assert code == 0
    results = json.loads((output / "results.json").read_text())
    candidate = results["candidates"][0]
    assert candidate["n"] == 5
    assert candidate["wins"] + candidate["ties"] + candidate["losses"] == 5
    assert candidate["interval"][0] <= candidate["win_rate"] <= candidate["interval"][1]
    assert 0 < candidate["mean_length_tokens"] <= 6
    lines = (output / "completions.jsonl").read_text().splitlines()
    assert len(lines) == 5
    assert json.loads(lines[0])["reference"] == "Reference answer 0."
    assert "win rate" in capsys.readouterr().out


def test_eval_json_flag_prints_results(
    files: dict[str, Path], tiny_policy_path: Path, tmp_path: Path, capsys: Any
) -> None:
    spec = _evaluate_spec(
        files, tiny_policy_path, eval_set={"path": str(files["eval_set"]), "max_prompts": 2}
    )
    code, _ = _run_eval(tmp_path, spec, "--json")
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["eval_set"]["prompts"] == 2


def test_same_model_compared_with_itself(
    files: dict[str, Path], tiny_policy_path: Path, tmp_path: Path
) -> None:
    spec = _evaluate_spec(files, tiny_policy_path, compare_with={"name": str(tiny_policy_path)})
    code, output = _run_eval(tmp_path, spec)
    comparison = json.loads((output / "results.json").read_text())["comparison"]
    assert code == 0
    assert comparison["difference"] == 0.0
    assert comparison["interval"] == [0.0, 0.0]
    assert not comparison["a_better"]


def test_policy_reference_of_same_model_ties(
    files: dict[str, Path], tiny_policy_path: Path, tmp_path: Path
) -> None:
    # Greedy completions of the same policy are identical, so every prompt is a tie.
    spec = _evaluate_spec(
        files,
        tiny_policy_path,
        eval_set={"path": str(files["prompts_only"])},
        reference={"source": "policy", "model": {"name": str(tiny_policy_path)}},
    )
    code, output = _run_eval(tmp_path, spec)
    results = json.loads((output / "results.json").read_text())
    assert code == 0
    assert results["reference"]["source"] == "policy"
    assert results["candidates"][0]["ties"] == 5
    assert results["candidates"][0]["win_rate"] == 0.5


def test_missing_references_rejected(
    files: dict[str, Path], tiny_policy_path: Path, tmp_path: Path, capsys: Any
) -> None:
    spec = _evaluate_spec(files, tiny_policy_path, eval_set={"path": str(files["prompts_only"])})
    code, output = _run_eval(tmp_path, spec)
    assert code == 2
    assert "no reference answer" in capsys.readouterr().err
    assert json.loads((output / "status.json").read_text())["state"] == "failed"


def test_preference_accuracy_reported(
    files: dict[str, Path], tiny_policy_path: Path, tmp_path: Path
) -> None:
    spec = _evaluate_spec(
        files,
        tiny_policy_path,
        eval_set={"path": str(files["eval_set"]), "max_prompts": 1},
        preference_data={"path": str(files["pairs"]), "max_rows": 6},
    )
    code, output = _run_eval(tmp_path, spec)
    preference = json.loads((output / "results.json").read_text())["candidates"][0]["preference"]
    assert code == 0
    assert preference["pairs"] == 6
    assert 0.0 <= preference["accuracy"] <= 1.0


def test_eval_rejects_train_spec(tmp_path: Path, capsys: Any) -> None:
    spec_path = _write_spec(tmp_path / "train.yaml", {"dataset": {"path": "pairs.jsonl"}})
    assert main(["eval", str(spec_path)]) == 2
    assert "cringe train" in capsys.readouterr().err


def test_train_rejects_evaluate_spec(files: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    spec = _evaluate_spec(files, files["judge"])
    spec_path = _write_spec(tmp_path / "eval.yaml", spec)
    assert main(["train", str(spec_path), "--output-dir", str(tmp_path / "out")]) == 2
    assert "cringe eval" in capsys.readouterr().err


def test_train_runs_reward_model_then_eval_uses_heldout(
    files: dict[str, Path], tiny_policy_path: Path, tmp_path: Path, capsys: Any
) -> None:
    # Reward pairs whose prompts are the evaluation instructions, so a held-out split of
    # them restricts the evaluation.
    rows = [{"prompt": text, "chosen": "A full answer.", "rejected": "no"} for text in INSTRUCTIONS]
    pairs = tmp_path / "eval_pairs.jsonl"
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    reward_spec = {
        "kind": "reward_model",
        "model": {"name": str(files["judge"])},
        "dataset": {"path": str(pairs)},
        "training": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "max_length": 32},
        "eval_fraction": 0.4,
    }
    spec_path = _write_spec(tmp_path / "reward.yaml", reward_spec)
    run = tmp_path / "reward-run"
    code = main(["train", str(spec_path), "--output-dir", str(run), "--device", "cpu"])
    assert code == 0
    assert "held-out accuracy" in capsys.readouterr().out

    spec = _evaluate_spec(
        files,
        tiny_policy_path,
        eval_set={"path": str(files["eval_set"]), "heldout_from": str(run)},
        judge={"name": str(run / "model"), "max_length": 64},
    )
    code, output = _run_eval(tmp_path, spec)
    assert code == 0
    assert json.loads((output / "results.json").read_text())["eval_set"]["prompts"] == 2


def test_binary_preference_data_rejected(
    files: dict[str, Path], tiny_policy_path: Path, tmp_path: Path, capsys: Any
) -> None:
    binary = tmp_path / "binary.jsonl"
    row = {"prompt": "Hi", "completion": "Hello there.", "label": True}
    binary.write_text(json.dumps(row) + "\n", encoding="utf-8")
    spec = _evaluate_spec(files, tiny_policy_path, preference_data={"path": str(binary)})
    code, _ = _run_eval(tmp_path, spec)
    assert code == 2
    assert "contains binary feedback" in capsys.readouterr().err
