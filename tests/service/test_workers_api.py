"""The internal endpoints workers report through, and their per-attempt tokens."""

from __future__ import annotations

from typing import Any

import pytest

from service.auth import WORKER_TOKEN_PREFIX, hash_secret, new_secret
from service.ids import new_id
from service.models import Attempt
from service.states import JobEvent, transition
from tests.service.conftest import Api, assert_error


def start_attempt(api: Api, job_id: str, number: int) -> str:
    """Record attempt `number` as the job's current one; return its worker token."""
    token = new_secret(WORKER_TOKEN_PREFIX)
    with api.db.write() as session:
        session.add(Attempt(id=new_id("att"), job_id=job_id, number=number,
                            token_hash=hash_secret(token), executor="test", handle="h"))
        event = JobEvent.ATTEMPT_STARTED
        if number == 1:
            transition(session, job_id, JobEvent.VALIDATION_PASSED, message="test")
        else:
            transition(session, job_id, JobEvent.ATTEMPT_LOST, message="test")
        transition(session, job_id, event, message="test", attempt=number)
    return token


@pytest.fixture
def running(api: Api) -> tuple[str, str]:
    job = api.submit()
    return job["id"], start_attempt(api, job["id"], 1)


def report(api: Api, job_id: str, token: str, resource: str, body: dict[str, Any]) -> Any:
    return api.client.post(f"/v1/internal/jobs/{job_id}/{resource}", json=body,
                           headers={"Authorization": f"Bearer {token}"})


POINTS = {"points": [{"name": "loss", "step": s, "value": 1.0 / s} for s in (1, 2, 3)]
          + [{"name": "reward_margin", "step": 3, "value": 0.5, "iteration": 1}]}


def test_metrics_batch_stored_once(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    first = report(api, job_id, token, "metrics", POINTS)
    again = report(api, job_id, token, "metrics", POINTS)
    stored = api.client.get(f"/v1/jobs/{job_id}/metrics", headers=api.headers).json()["data"]
    job = api.client.get(f"/v1/jobs/{job_id}", headers=api.headers).json()
    assert first.status_code == 200
    assert again.status_code == 200
    assert len(stored) == 4
    assert stored[0] == {"name": "loss", "step": 1, "value": 1.0, "iteration": 0, "attempt": 1}
    assert job["latest_metrics"] == {"loss": pytest.approx(1 / 3), "reward_margin": 0.5}
    assert job["progress"]["step"] == 3


def test_metrics_filters(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    report(api, job_id, token, "metrics", POINTS)
    by_name = api.client.get(f"/v1/jobs/{job_id}/metrics", params={"name": "loss",
                             "after_step": 1}, headers=api.headers).json()["data"]
    assert [(p["name"], p["step"]) for p in by_name] == [("loss", 2), ("loss", 3)]


def test_metrics_pages_split_a_step(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    report(api, job_id, token, "metrics", POINTS)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = api.client.get(f"/v1/jobs/{job_id}/metrics", params=params,
                              headers=api.headers).json()
        seen += [(p["name"], p["step"]) for p in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == [("loss", 1), ("loss", 2), ("loss", 3), ("reward_margin", 3)]


def test_status_reports_end_job(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    progress = report(api, job_id, token, "status", {"state": "running", "phase": "training",
                                                     "step": 7, "total_steps": 10})
    done = report(api, job_id, token, "status", {"state": "succeeded"})
    repeat = report(api, job_id, token, "status", {"state": "succeeded"})
    job = api.client.get(f"/v1/jobs/{job_id}", headers=api.headers).json()
    assert progress.json() == {"status": "running", "changed": False}
    assert done.json() == {"status": "succeeded", "changed": True}
    assert repeat.json() == {"status": "succeeded", "changed": False}
    assert job["phase"] == "training"
    assert job["progress"] == {"step": 7, "total_steps": 10, "round": None}


def test_failed_report_sets_error(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    report(api, job_id, token, "status", {"state": "failed", "error": {
        "code": "invalid_data", "message": "3 rows invalid", "details": [{"row": 3}]}})
    job = api.client.get(f"/v1/jobs/{job_id}", headers=api.headers).json()
    assert job["status"] == "failed"
    assert job["error"] == {"code": "invalid_data", "message": "3 rows invalid",
                            "details": [{"row": 3}]}


def test_results_resources(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    report(api, job_id, token, "checkpoints", {"step": 5, "kind": "resumable",
                                               "path": "/runs/ck5", "size_bytes": 10})
    report(api, job_id, token, "checkpoints", {"step": 5, "kind": "resumable",
                                               "path": "/runs/ck5", "size_bytes": 10})
    report(api, job_id, token, "iterations", {"round": 1, "phase": "generating"})
    report(api, job_id, token, "iterations", {"round": 1, "phase": "training",
                                              "pairs_generated": 100, "pairs_kept": 80})
    evaluation = {"candidate": "round-1", "reference": "sft", "judge": "rm", "n": 10,
                  "wins": 6, "ties": 1, "losses": 3, "win_rate": 0.65, "ci_low": 0.4,
                  "ci_high": 0.85}
    report(api, job_id, token, "evaluations", evaluation)
    events = report(api, job_id, token, "events", {"events": [{"message": "loaded data"}]})

    def fetch(resource: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = api.client.get(
            f"/v1/jobs/{job_id}/{resource}", headers=api.headers).json()["data"]
        return result

    checkpoints, iterations = fetch("checkpoints"), fetch("iterations")
    evaluations = fetch("evaluations")
    assert len(checkpoints) == 1
    assert checkpoints[0]["path"] == "/runs/ck5"
    assert [(i["round"], i["phase"], i["pairs_kept"]) for i in iterations] == [
        (1, "training", 80)]
    assert evaluations[0]["win_rate"] == 0.65
    assert evaluations[0]["ci_low"] == 0.4
    assert events.status_code == 200
    assert fetch("events")[-1]["message"] == "loaded data"


def test_invalid_worker_token(api: Api, running: tuple[str, str]) -> None:
    job_id, _ = running
    assert_error(report(api, job_id, "cw_forged", "metrics", POINTS), 401,
                 "invalid_worker_token")


def test_api_key_is_not_a_worker_token(api: Api, running: tuple[str, str]) -> None:
    job_id, _ = running
    assert_error(report(api, job_id, api.key, "metrics", POINTS), 401, "invalid_worker_token")


def test_token_of_another_job(api: Api, running: tuple[str, str]) -> None:
    _, token = running
    other = api.submit()
    assert_error(report(api, other["id"], token, "metrics", POINTS), 403, "token_not_for_job")


def test_superseded_attempt_refused(api: Api, running: tuple[str, str]) -> None:
    job_id, old_token = running
    new_token = start_attempt(api, job_id, 2)
    stale = report(api, job_id, old_token, "status", {"state": "succeeded"})
    fresh = report(api, job_id, new_token, "metrics", POINTS)
    error = assert_error(stale, 409, "attempt_superseded")
    assert error["details"] == [{"attempt": 1, "current_attempt": 2}]
    assert fresh.status_code == 200


def test_report_after_end_rejected(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    report(api, job_id, token, "status", {"state": "succeeded"})
    late = report(api, job_id, token, "status", {"state": "failed"})
    error = assert_error(late, 409, "invalid_transition")
    assert error["details"][0]["status"] == "succeeded"
