"""Every error case of the API contract: status, stable code, and no traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.db import Database
from service.idempotency import Reservation, request_hash, reserve
from service.states import JobEvent, transition
from service.validation import known_kinds
from tests.service.conftest import Api, assert_error

GOOD_SPEC: dict[str, Any] = {"dataset": {"path": "pairs.jsonl.gz"}}


def post_spec(api: Api, spec: dict[str, Any]) -> Any:
    return api.client.post("/v1/jobs", json={"spec": spec}, headers=api.headers)


def test_body_not_json(api: Api) -> None:
    headers = {**api.headers, "Content-Type": "application/json"}
    response = api.client.post("/v1/jobs", content=b'{"spec": ', headers=headers)
    assert_error(response, 400, "invalid_json")


def test_wrong_media_type(api: Api) -> None:
    response = api.client.post(
        "/v1/jobs", content=json.dumps({"spec": GOOD_SPEC}),
        headers={**api.headers, "Content-Type": "text/plain"},
    )
    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"]


def test_body_too_large(api: Api) -> None:
    padding = "x" * (api.settings.max_body_bytes + 1)
    response = api.client.post("/v1/jobs", json={"spec": GOOD_SPEC, "metadata": {"p": padding}},
                               headers=api.headers)
    assert_error(response, 413, "body_too_large")


def test_request_fields_all_listed(api: Api) -> None:
    response = api.client.post("/v1/jobs", json={"metadata": {"a": 5}, "colour": "red"},
                               headers=api.headers)
    error = assert_error(response, 422, "validation_error")
    problems = {(d["param"], d["type"]) for d in error["details"]}
    assert ("/spec", "missing") in problems
    assert ("/colour", "extra_forbidden") in problems
    assert ("/metadata/a", "string_type") in problems


def test_spec_fields_all_listed(api: Api) -> None:
    spec = {"training": {"max_steps": "many"}, "colour": "red"}
    error = assert_error(post_spec(api, spec), 422, "invalid_spec")
    params = {detail["param"] for detail in error["details"]}
    assert params == {"/spec/dataset", "/spec/training/max_steps", "/spec/colour"}


def test_out_of_range_names_range(api: Api) -> None:
    spec = {**GOOD_SPEC, "loss": {"name": "pairwise_cringe", "temperature": -1}}
    error = assert_error(post_spec(api, spec), 422, "invalid_spec")
    assert error["param"] == "/spec/loss/temperature"
    assert "greater than 0" in error["message"]


def test_field_of_another_loss(api: Api) -> None:
    spec = {**GOOD_SPEC, "loss": {"name": "dpo", "temperature": 5.0}}
    error = assert_error(post_spec(api, spec), 422, "invalid_spec")
    assert error["details"][0]["param"] == "/spec/loss/temperature"
    assert error["details"][0]["type"] == "extra_forbidden"


def test_unknown_model(api: Api) -> None:
    spec = {**GOOD_SPEC, "model": {"name": "no-such-model"}}
    error = assert_error(post_spec(api, spec), 422, "unknown_model")
    assert error["param"] == "/spec/model/name"
    assert "smollm2-135m-instruct" in error["message"]


def test_unknown_reward_model(api: Api) -> None:
    spec = {"kind": "reward_model", "dataset": GOOD_SPEC["dataset"],
            "model": {"name": "no-such-reward-model"}}
    error = assert_error(post_spec(api, spec), 422, "unknown_model")
    assert error["param"] == "/spec/model/name"


def test_unknown_judge(api: Api) -> None:
    spec = {"kind": "evaluate", "eval_set": {"path": "pairs.jsonl.gz"},
            "judge": {"name": "no-such-judge"}}
    error = assert_error(post_spec(api, spec), 422, "unknown_model")
    assert error["param"] == "/spec/judge/name"


def test_model_folder_in_root_accepted(api: Api) -> None:
    job = api.submit({**GOOD_SPEC, "model": {"name": "models/tiny-policy"}})
    assert job["resolved_spec"]["model"]["name"].endswith("models/tiny-policy")


def test_unsupported_kind(api: Api) -> None:
    error = assert_error(post_spec(api, {"kind": "distill"}), 422, "unsupported_kind")
    assert error["param"] == "/spec/kind"
    assert "'distill'" in error["message"]
    assert ", ".join(known_kinds()) in error["message"]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("missing.jsonl", "dataset_not_found"),
        ("folder.jsonl", "dataset_unreadable"),
        ("truncated.jsonl.gz", "dataset_unreadable"),
        ("table.csv", "dataset_format_unknown"),
        ("prose.jsonl", "dataset_format_unknown"),
        ("empty.jsonl", "dataset_empty"),
        ("blank.jsonl", "dataset_empty"),
    ],
)
def test_dataset_rejected(api: Api, path: str, code: str) -> None:
    error = assert_error(post_spec(api, {"dataset": {"path": path}}), 422, code)
    assert error["param"] == "/spec/dataset/path"


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.jsonl", "link.jsonl"])
def test_dataset_outside_roots(api: Api, path: str) -> None:
    error = assert_error(post_spec(api, {"dataset": {"path": path}}), 422,
                         "dataset_path_not_allowed")
    assert str(api.settings.data_roots[0]) in error["message"]


def test_every_dataset_problem_listed(api: Api) -> None:
    spec = {"kind": "reward_model",
            "dataset": [{"path": "empty.jsonl"}, {"path": "missing.jsonl"}]}
    error = assert_error(post_spec(api, spec), 422, "dataset_empty")
    assert [d["param"] for d in error["details"]] == ["/spec/dataset/0/path",
                                                      "/spec/dataset/1/path"]


def test_spec_too_large(make_api: Any) -> None:
    api = make_api(max_spec_bytes=256)
    spec = {**GOOD_SPEC, "model": {"name": "x" * 300}}
    assert_error(post_spec(api, spec), 422, "spec_too_large")


def test_metadata_too_large(api: Api) -> None:
    metadata = {f"k{i}": "v" * 400 for i in range(30)}
    response = api.client.post("/v1/jobs", json={"spec": GOOD_SPEC, "metadata": metadata},
                               headers=api.headers)
    assert_error(response, 422, "invalid_metadata")


def test_missing_api_key(api: Api) -> None:
    response = api.client.get("/v1/jobs")
    assert_error(response, 401, "missing_api_key")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_wrong_api_key(api: Api) -> None:
    response = api.client.get("/v1/jobs", headers={"Authorization": "Bearer ck_wrong"})
    assert_error(response, 401, "invalid_api_key")


def test_other_tenant_job_not_found(api: Api) -> None:
    job = api.submit()
    _, other_key = api.new_key()
    response = api.client.get(f"/v1/jobs/{job['id']}",
                              headers={"Authorization": f"Bearer {other_key}"})
    assert_error(response, 404, "job_not_found")


def test_other_tenant_cannot_cancel(api: Api) -> None:
    job = api.submit()
    _, other_key = api.new_key()
    response = api.client.post(f"/v1/jobs/{job['id']}/cancel",
                               headers={"Authorization": f"Bearer {other_key}"})
    assert_error(response, 404, "job_not_found")


@pytest.mark.parametrize("job_id", ["job_01J00000000000000000000000", "nonsense"])
def test_unknown_job(api: Api, job_id: str) -> None:
    assert_error(api.client.get(f"/v1/jobs/{job_id}", headers=api.headers), 404, "job_not_found")


def _fail_job(db: Database, job_id: str) -> None:
    with db.write() as session:
        transition(session, job_id, JobEvent.VALIDATION_FAILED, message="test: data rejected")


def test_cancel_finished_job(api: Api) -> None:
    job = api.submit()
    _fail_job(api.db, job["id"])
    response = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers)
    error = assert_error(response, 409, "job_already_finished")
    assert error["details"] == [{"status": "failed"}]
    assert "failed" in error["message"]


def test_cancel_cancelled_is_noop(api: Api) -> None:
    job = api.submit()
    first = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers)
    second = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers)
    events = api.client.get(f"/v1/jobs/{job['id']}/events", headers=api.headers).json()
    assert first.status_code == 200
    assert second.status_code == 200
    assert second.json()["status"] == "cancelled"
    assert second.json()["version"] == first.json()["version"]
    assert [e["type"] for e in events["data"]] == ["job_created", "cancel_requested"]


def test_idempotency_key_other_body(api: Api) -> None:
    headers = {**api.headers, "Idempotency-Key": "key-other-body"}
    first = api.client.post("/v1/jobs", json={"spec": GOOD_SPEC}, headers=headers)
    other = api.client.post("/v1/jobs", json={"spec": GOOD_SPEC, "metadata": {"a": "b"}},
                            headers=headers)
    assert first.status_code == 201
    assert_error(other, 422, "idempotency_key_reused")


def test_idempotency_key_in_flight(api: Api) -> None:
    body = {"spec": GOOD_SPEC, "metadata": {}}
    reservation = Reservation(api.principal.project_id, "POST /v1/jobs", "key-in-flight",
                              request_hash("POST /v1/jobs", body))
    assert reserve(api.db, api.settings, reservation) is None  # the first request, running
    response = api.client.post("/v1/jobs", json=body,
                               headers={**api.headers, "Idempotency-Key": "key-in-flight"})
    assert_error(response, 409, "idempotency_key_in_flight")


def test_invalid_idempotency_key(api: Api) -> None:
    response = api.client.post("/v1/jobs", json={"spec": GOOD_SPEC},
                               headers={**api.headers, "Idempotency-Key": "has space"})
    assert_error(response, 422, "invalid_idempotency_key")


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/{id}/metrics",
                                  "/v1/jobs/{id}/checkpoints", "/v1/jobs/{id}/evaluations",
                                  "/v1/jobs/{id}/iterations"])
@pytest.mark.parametrize("cursor", ["zzz", "eyJ2IjoxfQ"])
def test_bad_cursor(api: Api, path: str, cursor: str) -> None:
    job = api.submit()
    response = api.client.get(path.format(id=job["id"]), params={"cursor": cursor},
                              headers=api.headers)
    assert_error(response, 400, "invalid_cursor")


def test_bad_last_event_id(api: Api) -> None:
    job = api.submit()
    response = api.client.get(f"/v1/jobs/{job['id']}/events/stream",
                              headers={**api.headers, "Last-Event-ID": "abc"})
    assert_error(response, 400, "invalid_cursor")


def test_page_size_over_maximum(api: Api) -> None:
    response = api.client.get("/v1/jobs", params={"limit": api.settings.max_page_size + 1},
                              headers=api.headers)
    error = assert_error(response, 422, "validation_error")
    assert error["param"] == "limit"


def test_database_down(api: Api) -> None:
    url = api.settings.database_url
    if url.startswith("sqlite"):
        unreachable = "sqlite:////nonexistent-folder/cringe.db"
    else:
        unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"
    api.app.state.db = Database(api.settings.model_copy(update={"database_url": unreachable}))
    response = api.client.get("/v1/jobs", headers={"Authorization": "Bearer ck_uncached"})
    assert_error(response, 503, "database_unavailable")
    assert response.headers["retry-after"] == str(api.settings.db_retry_after_s)


def test_unknown_route(api: Api) -> None:
    assert_error(api.client.get("/v2/nothing", headers=api.headers), 404, "not_found")


def test_method_not_allowed(api: Api) -> None:
    assert_error(api.client.delete("/v1/jobs", headers=api.headers), 405, "method_not_allowed")


def test_internal_error_hides_traceback(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import service.routes.jobs as routes

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(routes, "list_jobs", broken)
    response = api.client.get("/v1/jobs", headers=api.headers)
    assert_error(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
