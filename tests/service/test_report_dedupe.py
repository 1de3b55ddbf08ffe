"""A worker resending an event or evaluation after a lost response stores it once."""

from __future__ import annotations

from typing import Any

from tests.service.conftest import Api, assert_error
from tests.service.test_workers_api import report, running, start_attempt

__all__ = ["running"]  # the fixture, imported for this module's tests

EVALUATION = {"round": 1, "candidate": "round-1", "reference": "eval_set", "judge": "rm",
              "n": 10, "wins": 6, "ties": 1, "losses": 3, "win_rate": 0.65, "ci_low": 0.4,
              "ci_high": 0.85}


def _fetch(api: Api, job_id: str, resource: str) -> list[dict[str, Any]]:
    response = api.client.get(f"/v1/jobs/{job_id}/{resource}", headers=api.headers)
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def _keyed_event(key: str) -> dict[str, Any]:
    return {"events": [{"message": "step 5 done", "data": {"key": key, "step": 5}}]}


def test_event_repeat_returns_stored_seq(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    first = report(api, job_id, token, "events", _keyed_event("1:step:5")).json()
    again = report(api, job_id, token, "events", _keyed_event("1:step:5")).json()
    assert again["seqs"] == first["seqs"]


def test_event_repeat_stored_once(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    for _ in range(3):
        report(api, job_id, token, "events", _keyed_event("1:step:5"))
    logged = [e for e in _fetch(api, job_id, "events") if e["message"] == "step 5 done"]
    assert len(logged) == 1


def test_events_without_key_all_stored(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    for _ in range(2):
        report(api, job_id, token, "events", {"events": [{"message": "tick"}]})
    assert len([e for e in _fetch(api, job_id, "events") if e["message"] == "tick"]) == 2


def test_same_key_new_attempt_stored(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    report(api, job_id, token, "events", _keyed_event("loaded"))
    second_token = start_attempt(api, job_id, 2)
    report(api, job_id, second_token, "events", _keyed_event("loaded"))
    logged = [e for e in _fetch(api, job_id, "events") if e["message"] == "step 5 done"]
    assert len(logged) == 2


def test_event_key_not_text_rejected(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    body = {"events": [{"message": "x", "data": {"key": 5}}]}
    assert_error(report(api, job_id, token, "events", body), 422, "validation_error")


def test_evaluation_repeat_returns_stored_id(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    body = {**EVALUATION, "key": "1:evaluation:1:round-1"}
    first = report(api, job_id, token, "evaluations", body).json()
    again = report(api, job_id, token, "evaluations", body).json()
    assert again["id"] == first["id"]


def test_evaluation_repeat_stored_once(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    body = {**EVALUATION, "key": "1:evaluation:1:round-1"}
    for _ in range(3):
        report(api, job_id, token, "evaluations", body)
    assert len(_fetch(api, job_id, "evaluations")) == 1


def test_evaluation_repeat_one_event(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    body = {**EVALUATION, "key": "1:evaluation:1:round-1"}
    for _ in range(2):
        report(api, job_id, token, "evaluations", body)
    recorded = [e for e in _fetch(api, job_id, "events") if e["type"] == "evaluation_recorded"]
    assert len(recorded) == 1


def test_evaluation_sets_latest_win_rate(api: Api, running: tuple[str, str]) -> None:
    job_id, token = running
    before = api.client.get(f"/v1/jobs/{job_id}", headers=api.headers).json()
    report(api, job_id, token, "evaluations", EVALUATION)
    report(api, job_id, token, "evaluations", {**EVALUATION, "round": 2, "win_rate": 0.7})

    job = api.client.get(f"/v1/jobs/{job_id}", headers=api.headers).json()
    assert job["latest_metrics"]["win_rate"] == 0.7
    assert job["updated_at"] > before["updated_at"]
    listed = api.client.get("/v1/jobs", headers=api.headers).json()["data"]
    assert [row["latest_metrics"].get("win_rate") for row in listed if row["id"] == job_id] == [
        0.7
    ]
