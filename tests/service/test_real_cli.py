"""One job through the real `cringe train` command, end to end (slow: loads SmolLM2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.dispatcher import Dispatcher
from service.local_executor import LocalExecutor
from service.settings import default_job_command
from tests.service.conftest import DatabaseFactory
from tests.service.test_dispatcher import get_list, run_until

TINY_SPEC = {
    "dataset": {"path": "pairs.jsonl.gz", "max_rows": 16, "max_invalid_fraction": 0.9},
    "loss": {"name": "pairwise_cringe"},
    "training": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "max_length": 512,
                 "checkpoint_every_steps": 1, "precision": "float32"},
}


@pytest.mark.slow
def test_real_train_job(make_api: Any, database_factory: DatabaseFactory) -> None:
    if database_factory.backend != "sqlite":
        pytest.skip("one real run is enough; the SQLite variant runs it")
    api = make_api(database_url=database_factory.migrated(), job_command=default_job_command())
    dispatcher = Dispatcher(api.db, api.settings, LocalExecutor(api.settings.job_command))
    job = api.submit(TINY_SPEC)
    done = run_until(dispatcher, api, job["id"], {"succeeded", "failed"}, timeout_s=900)
    metrics = get_list(api, job["id"], "metrics")
    checkpoints = get_list(api, job["id"], "checkpoints")
    assert done["status"] == "succeeded", done["error"]
    assert {p["step"] for p in metrics if p["name"] == "loss"} == {1, 2}
    assert [c["kind"] for c in checkpoints] == ["resumable", "resumable", "model"]
    assert Path(checkpoints[-1]["path"]).is_dir()
