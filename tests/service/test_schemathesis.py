"""Property-based requests over the served OpenAPI document: no response is a 5xx.

Cases are generated from the document itself, valid and invalid, with a real API key,
a real job id for the path and, for the internal endpoints, that job's worker token.
The number of examples is bounded to keep the run short, and the event stream, which stays
open while a job runs, is left to its own tests.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.service.conftest import Api
from tests.service.test_workers_api import start_attempt

MAX_EXAMPLES = 120


def test_no_server_errors(api: Api) -> None:
    job = api.submit()
    token = start_attempt(api, job["id"], 1)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    strategies = []
    for credentials, prefix in ((api.key, "/v1/jobs"), (token, "/v1/internal")):
        auth = {"Authorization": f"Bearer {credentials}"}
        # The event stream stays open while the job runs; its own tests cover it.
        part = schema.include(path_regex=f"^{prefix}").exclude(path_regex="/stream$")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(part.as_strategy(mode, headers=auth,
                                               path_parameters={"job_id": job["id"]}))
    failures: list[str] = []

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def send(case: Any) -> None:
        response = case.call()
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.body!r:.300} -> "
                            f"{response.status_code} {response.text[:300]}")

    send()
    assert failures == []
