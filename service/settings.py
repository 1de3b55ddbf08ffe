"""Service settings, read from `CRINGE_*` environment variables and validated at start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cringe_core.spec import DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cringe"


def default_job_command() -> list[str]:
    """Return the command the local executor runs for a job: the `cringe train` CLI."""
    import sys

    return [sys.executable, "-m", "cringe_core.cli.main", "train", "{spec}", "--output-dir",
            "{output_dir}"]


def default_eval_command() -> list[str]:
    """Return the command the local executor runs for an `evaluate` job: `cringe eval`."""
    import sys

    return [sys.executable, "-m", "cringe_core.cli.main", "eval", "{spec}", "--output-dir",
            "{output_dir}"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRINGE_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Folder for the SQLite database (when no URL is given) and job outputs.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means a SQLite file `cringe.db` in `data_dir`. "
        "Use postgresql+psycopg://... in production.",
    )
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders that job data sets may be read from, separated by the OS path "
        "separator (':' on Linux); empty means `data_dir`/datasets.",
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE],
        description="Comma-separated model names (aliases or hub ids) this server accepts, "
        "besides local model folders under a data root or the runs folder.",
    )
    runs_dir: Path | None = Field(
        default=None, description="Job output folders; default data_dir/runs."
    )

    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest body.")
    max_spec_bytes: int = Field(
        default=65_536, ge=256, description="Largest job spec, as compact JSON."
    )
    max_metadata_bytes: int = Field(
        default=8_192, ge=64, description="Largest job metadata, as JSON."
    )
    max_metadata_keys: int = Field(default=32, ge=1)
    max_page_size: int = Field(
        default=200, ge=1, le=10_000, description="Largest `limit` of a list."
    )
    max_metrics_page_size: int = Field(default=1000, ge=1, le=100_000)
    max_report_points: int = Field(
        default=10_000, ge=1, description="Metric points per worker report."
    )

    dispatcher_enabled: bool = Field(
        default=True, description="Run the dispatcher in this process."
    )
    dispatch_interval_s: float = Field(default=1.0, gt=0)
    max_running_jobs: int = Field(
        default=1, ge=1, description="Jobs running at once on this executor."
    )
    max_infra_retries: int = Field(
        default=0, ge=0,
        description="New attempts after an attempt is lost; 0 fails the job instead.",
    )
    cancel_grace_s: float = Field(
        default=30.0, ge=0, description="SIGTERM to SIGKILL delay on cancel."
    )
    job_command: list[str] = Field(
        default_factory=default_job_command,
        description="Command the local executor runs (JSON list); {spec} and {output_dir} "
        "are replaced, and --resume is appended for a resumed attempt.",
    )
    eval_command: list[str] = Field(
        default_factory=default_eval_command,
        description="Command the local executor runs for `evaluate` jobs (JSON list); "
        "evaluation starts over on a new attempt, so --resume is never appended.",
    )
    executor: Literal["local", "ray"] = Field(
        default="local",
        description="`local` runs attempts as subprocesses on this machine; `ray` submits "
        "each attempt as a Ray job to RAY_ADDRESS, or to a Ray head this process starts on "
        "127.0.0.1 when RAY_ADDRESS is unset.",
    )
    service_url: str = Field(
        default="",
        description="URL at which Ray workers reach this service's internal endpoints; "
        "empty means http://127.0.0.1:<port> of `cringe serve`.",
    )
    ray_num_cpus: int | None = Field(
        default=None, ge=1, description="CPUs of the local Ray head; default all of them."
    )
    ray_dashboard_port: int = Field(
        default=8265, ge=1, le=65535,
        description="Port of the local Ray head's dashboard and job API (on 127.0.0.1).",
    )

    idempotency_ttl_s: int = Field(
        default=86_400, ge=60, description="How long a key is remembered."
    )
    idempotency_in_flight_timeout_s: float = Field(
        default=60.0, gt=0,
        description="After this, a request still marked in flight is taken over.",
    )
    sse_poll_interval_s: float = Field(default=0.5, gt=0)
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    db_retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with a 503.")
    db_pool_size: int = Field(default=10, ge=1)
    threadpool_size: int = Field(
        default=8, ge=1, description="Threads serving synchronous routes, per process."
    )
    gc_freeze: bool = Field(
        default=True,
        description="Freeze the objects alive at start-up out of garbage collection, which "
        "shortens collection pauses. Turn it off where one process builds many apps (tests): "
        "frozen objects that later die in reference cycles are never freed.",
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("job_command", "eval_command")
    @classmethod
    def _command_has_placeholders(cls, value: list[str], info: ValidationInfo) -> list[str]:
        joined = " ".join(value)
        missing = [name for name in ("{spec}", "{output_dir}") if name not in joined]
        if not value or missing:
            raise ValueError(
                f"{info.field_name} {value!r} lacks {', '.join(missing) or 'a program'}; "
                "give a JSON list such as "
                '["cringe", "train", "{spec}", "--output-dir", "{output_dir}"]'
            )
        return value

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'cringe.db'}"
        if not self.data_roots:
            self.data_roots = [self.data_dir / "datasets"]
        if self.runs_dir is None:
            self.runs_dir = self.data_dir / "runs"
        return self

    @property
    def output_root(self) -> Path:
        assert self.runs_dir is not None  # filled in by _fill_paths
        return self.runs_dir
