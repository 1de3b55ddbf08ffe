"""`/metrics`: jobs by status and kind from the database, request latency by route."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import Api


def scrape(api: Api) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value
            )
    return samples


def test_jobs_counted_by_status_and_kind(api: Api) -> None:
    before = scrape(api)["cringe_jobs"]
    first = api.submit()
    api.submit()
    job = api.submit()
    waiting_train = (("kind", "train"), ("status", first["status"]))
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers)

    after = scrape(api)
    jobs = after["cringe_jobs"]
    cancelled_train = (("kind", "train"), ("status", "cancelled"))
    assert jobs[waiting_train] - before[waiting_train] == 2
    assert jobs[cancelled_train] - before[cancelled_train] == 1
    assert after["cringe_database_up"][()] == 1
    assert (("kind", "iterate"), ("status", "recovering")) in jobs


def test_latency_labelled_by_route_template(api: Api) -> None:
    job = api.submit()
    for _ in range(3):
        api.client.get(f"/v1/jobs/{job['id']}", headers=api.headers)
    api.client.get("/v1/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=api.headers)
    api.client.get("/no/such/path")

    samples = scrape(api)["cringe_http_request_duration_seconds_count"]
    read = (("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "200"))
    missing = (("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "404"))
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert samples[read] == 3
    assert samples[missing] == 1
    assert samples[unmatched] == 1
    assert not any(re.search(r"job_[0-9A-Z]{26}", dict(labels)["route"]) for labels in samples)


def test_metrics_needs_no_api_key(api: Api) -> None:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert "cringe_jobs" in response.text
