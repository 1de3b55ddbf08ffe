"""Reading jobs: payload, listing and cursors, ETags, idempotent cancel, event streams."""

from __future__ import annotations

from typing import Any

from tests.service.conftest import Api


def test_job_payload_fields(api: Api) -> None:
    job = api.submit({"dataset": {"path": "pairs.jsonl.gz"}, "loss": {"name": "dpo"}})
    assert job["id"].startswith("job_")
    assert job["kind"] == "train"
    assert job["status"] == "validating"
    assert job["is_terminal"] is False
    assert job["spec"] == {"dataset": {"path": "pairs.jsonl.gz"}, "loss": {"name": "dpo"}}
    assert job["resolved_spec"]["loss"] == {"name": "dpo", "beta": 0.1,
                                            "reference": "precomputed"}
    assert job["resolved_spec"]["dataset"]["path"] == str(
        api.settings.data_roots[0] / "pairs.jsonl.gz")
    assert job["progress"] == {"step": 0, "total_steps": 100, "round": None}
    assert job["created_at"].endswith("Z")
    assert job["attempt"] == 0
    assert job["version"] == 1


def test_list_pages_newest_first(api: Api) -> None:
    ids = [api.submit()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/jobs", params=params, headers=api.headers).json()
        seen += [job["id"] for job in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == sorted(ids, reverse=True)


def test_list_filters(api: Api) -> None:
    kept = api.submit()
    cancelled = api.submit()
    api.client.post(f"/v1/jobs/{cancelled['id']}/cancel", headers=api.headers)
    by_status = api.client.get("/v1/jobs", params={"status": "cancelled"},
                               headers=api.headers).json()["data"]
    by_kind = api.client.get("/v1/jobs", params={"kind": "evaluate"},
                             headers=api.headers).json()["data"]
    assert [job["id"] for job in by_status] == [cancelled["id"]]
    assert by_kind == []
    assert kept["id"] != cancelled["id"]


def test_list_only_own_project(api: Api) -> None:
    api.submit()
    _, other_key = api.new_key()
    page = api.client.get("/v1/jobs", headers={"Authorization": f"Bearer {other_key}"}).json()
    assert page["data"] == []


def test_etag_not_modified(api: Api) -> None:
    job = api.submit()
    first = api.client.get(f"/v1/jobs/{job['id']}", headers=api.headers)
    again = api.client.get(f"/v1/jobs/{job['id']}",
                           headers={**api.headers, "If-None-Match": first.headers["etag"]})
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers)
    changed = api.client.get(f"/v1/jobs/{job['id']}",
                             headers={**api.headers, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert changed.status_code == 200


def test_create_replay_same_job(api: Api) -> None:
    headers = {**api.headers, "Idempotency-Key": "replay-me"}
    body = {"spec": {"dataset": {"path": "pairs.jsonl.gz"}}}
    first = api.client.post("/v1/jobs", json=body, headers=headers)
    second = api.client.post("/v1/jobs", json=body, headers=headers)
    assert second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


def test_failed_request_releases_key(api: Api) -> None:
    headers = {**api.headers, "Idempotency-Key": "fix-and-retry"}
    bad = api.client.post("/v1/jobs", json={"spec": {"dataset": {"path": "missing.jsonl"}}},
                          headers=headers)
    good = api.client.post("/v1/jobs", json={"spec": {"dataset": {"path": "pairs.jsonl.gz"}}},
                           headers=headers)
    assert bad.status_code == 422
    assert good.status_code == 201


def test_cancel_replay(api: Api) -> None:
    job = api.submit()
    headers = {**api.headers, "Idempotency-Key": "cancel-once"}
    first = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
    second = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"


def test_event_pages_after(api: Api) -> None:
    job = api.submit()
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers)
    page = api.client.get(f"/v1/jobs/{job['id']}/events", params={"after": 1},
                          headers=api.headers).json()
    assert [event["seq"] for event in page["data"]] == [2]
    assert page["last_seq"] == 2


def parse_sse(text: str) -> list[dict[str, str]]:
    frames = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "id" in fields:
            frames.append(fields)
    return frames


def test_stream_resumes_after_last_event_id(api: Api) -> None:
    job = api.submit()
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers)
    full = api.client.get(f"/v1/jobs/{job['id']}/events/stream", headers=api.headers)
    resumed = api.client.get(f"/v1/jobs/{job['id']}/events/stream",
                             headers={**api.headers, "Last-Event-ID": "1"})
    assert full.headers["content-type"].startswith("text/event-stream")
    assert [f["id"] for f in parse_sse(full.text)] == ["1", "2"]
    assert [(f["id"], f["event"]) for f in parse_sse(resumed.text)] == [("2", "cancel_requested")]


def test_health_endpoints(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "migrated"


def test_openapi_has_spec_schema(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["JobCreate"]["properties"]["spec"]["$ref"] == "#/components/schemas/JobSpec"
    assert "spec.TrainJobSpec" in schemas
    assert "/v1/jobs/{job_id}/events/stream" in document["paths"]
