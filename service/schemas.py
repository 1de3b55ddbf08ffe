"""Request and response bodies of the public API (`Create` in, `Public` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobCreate(Strict):
    spec: dict[str, Any] = Field(
       default= ..., description="The job spec; its schema is the `JobSpec` component."
    )
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Your own labels, returned unchanged."
    )


class Progress(BaseModel):
    step: int | None = None
    total_steps: int | None = None
    round: int | None = None


class JobError(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class JobPublic(BaseModel):
    id: str
    object: Literal["job"] = "job"
    kind: str
    status: str
    is_terminal: bool
    phase: str | None
    progress: Progress
    spec: dict[str, Any]
    resolved_spec: dict[str, Any]
    metadata: dict[str, str]
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    attempt: int
    version: int
    latest_metrics: dict[str, float | None]


class Page(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class EventPublic(BaseModel):
    seq: int
    type: str
    message: str
    data: dict[str, Any] | None
    created_at: datetime


class EventPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventPublic]
    has_more: bool
    last_seq: int = Field(..., description="Pass as `after` to poll for newer events.")


class MetricPointPublic(BaseModel):
    name: str
    step: int
    value: float | None
    iteration: int
    attempt: int


class IterationPublic(BaseModel):
    round: int
    phase: str | None
    pairs_generated: int | None
    pairs_kept: int | None
    reward_stats: dict[str, Any] | None
    checkpoint: str | None
    win_rate: float | None
    updated_at: datetime


class EvaluationPublic(BaseModel):
    id: str
    round: int | None
    candidate: str
    reference: str
    judge: str
    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float
    ci_low: float = Field(..., description="Lower end of the 95% interval of the win rate.")
    ci_high: float
    created_at: datetime


class CheckpointPublic(BaseModel):
    id: str
    step: int
    round: int | None
    kind: Literal["resumable", "model"]
    path: str
    size_bytes: int | None
    metrics: dict[str, Any] | None
    attempt: int
    created_at: datetime


class ErrorBody(BaseModel):
    code: str
    message: str
    param: str | None
    details: list[dict[str, Any]]
    request_id: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    schema_revision: str | None = None
    executor: str | None = None
    detail: str | None = None
