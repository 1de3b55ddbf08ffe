"""`cringe train`: exit codes, listed spec errors, data reports and the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cringe_core.cli.main import EXIT_BAD_INPUT, EXIT_OK, main
from tests.conftest import ALPACA_EVAL


def _write_spec(folder: Path, spec: dict) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_train_lists_every_spec_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = _write_spec(tmp_path, {"loss": {"name": "dpo", "beta": 0, "alpha": 2}})
    code = main(["train", str(spec), "--output-dir", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "/dataset: missing required field" in stderr
    assert "/loss/beta" in stderr
    assert "/loss/alpha: unknown field 'alpha'" in stderr
    assert "Traceback" not in stderr


def test_train_reports_data_defects(
    tmp_path: Path, capsys: pytest.CaptureFixture, tiny_policy_path: Path
) -> None:
    data = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away."},
        {"prompt": "Say hi.", "chosen": "Same.", "rejected": "Same."},
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = _write_spec(
        tmp_path,
        {"model": {"name": str(tiny_policy_path)}, "dataset": {"path": str(data)}},
    )
    run = tmp_path / "run"
    code = main(["train", str(spec), "--output-dir", str(run)])
    stderr = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "chosen_equals_rejected: 1 row(s) (rows 2)" in stderr
    assert json.loads((run / "status.json").read_text())["state"] == "failed"


def test_train_writes_run_folder(tmp_path: Path, tiny_policy_path: Path) -> None:
    spec = _write_spec(
        tmp_path,
        {
            "model": {"name": str(tiny_policy_path)},
            "dataset": {
                "path": str(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz"),
                "max_rows": 8,
            },
            "loss": {"name": "sft"},
            "training": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 1, "max_length": 96},
        },
    )
    run = tmp_path / "run"
    assert main(["train", str(spec), "--output-dir", str(run)]) == EXIT_OK

    status = json.loads((run / "status.json").read_text())
    resolved = json.loads((run / "resolved_spec.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert status == {"state": "succeeded", "step": 2, "max_steps": 2}
    assert resolved["training"]["learning_rate"] == 5e-6
    assert [m["step"] for m in metrics] == [1, 2]
    assert (run / "model" / "model.safetensors").is_file()
    assert (run / "checkpoints" / "step-00000002" / "optimizer.pt").is_file()


def test_train_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", str(tmp_path / "absent.yaml")])
    assert code == EXIT_BAD_INPUT
    assert "absent.yaml" in capsys.readouterr().err


def test_wrong_loss_for_binary_data(
    tmp_path: Path, capsys: pytest.CaptureFixture, tiny_policy_path: Path
) -> None:
    data = tmp_path / "feedback.jsonl"
    rows = [
        {"prompt": "Say hi.", "completion": "Hi!", "label": True},
        {"prompt": "Say hi.", "completion": "No.", "label": False},
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = _write_spec(
        tmp_path,
        {
            "model": {"name": str(tiny_policy_path)},
            "dataset": {"path": str(data)},
            "loss": {"name": "dpo"},
        },
    )
    code = main(["train", str(spec), "--output-dir", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "binary_cringe" in stderr


def test_train_rejects_several_workers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = _write_spec(
        tmp_path, {"dataset": {"path": "pairs.jsonl"}, "scaling": {"num_workers": 2}}
    )
    code = main(["train", str(spec), "--output-dir", str(tmp_path / "run")])
    assert code == EXIT_BAD_INPUT
    assert "scaling.num_workers = 2" in capsys.readouterr().err
