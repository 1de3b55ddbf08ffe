"""One Ray cluster on this machine, shared by every worker test in the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        runtime_env={"env_vars": {"CRINGE_TORCH_THREADS": "1"}},
    )
    yield
    ray.shutdown()
