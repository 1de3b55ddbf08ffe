"""Everything checked at `POST /v1/jobs` before a job is stored: sizes, spec, paths.

The spec schema is `cringe_core.spec`, imported and never restated: the job kinds this
server accepts are the ones its schema accepts.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from cringe_core.spec import SpecError, json_schema, parse_spec, resolve
from service.data_paths import check_spec_paths
from service.errors import DomainError, KindUnsupported, MetadataInvalid, SpecInvalid, SpecTooLarge
from service.local_executor import LOCAL_KINDS
from service.schemas import JobCreate
from service.settings import Settings

MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


@dataclass(frozen=True)
class Submission:
    kind: str
    resolved_spec: dict[str, Any]
    total_steps: int | None


def json_size_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode("utf-8"))


@functools.cache
def known_kinds() -> tuple[str, ...]:
    """Return the `kind` values of the spec schema: of its root, or of each union member."""
    schema = json_schema()
    definitions = schema.get("$defs", {})
    members = [schema]
    for union in ("oneOf", "anyOf"):
        for member in schema.get(union, []):
            reference = member.get("$ref", "")
            members.append(definitions.get(reference.rsplit("/", 1)[-1], member))
    kinds: list[str] = []
    for member in members:
        kind = member.get("properties", {}).get("kind", {})
        values = [kind["const"]] if "const" in kind else list(kind.get("enum", []))
        kinds.extend(value for value in values if value not in kinds)
    return tuple(kinds)


def validate_submission(body: JobCreate, settings: Settings) -> Submission:
    """Check a job request; raise the first problem with every problem in `details`."""
    spec_bytes = json_size_bytes(body.spec)
    if spec_bytes > settings.max_spec_bytes:
        raise SpecTooLarge(
            f"spec is {spec_bytes} bytes as compact JSON, over the limit of "
            f"{settings.max_spec_bytes}; pass large inputs as data set files, not inline",
            param="/spec",
        )
    check_metadata(body.metadata, settings)

    # Before the spec's own checks: a kind this server cannot run needs no other fixes.
    kind = body.spec.get("kind")
    if isinstance(kind, str):
        _check_executor_runs(kind, settings)
    try:
        spec = parse_spec(body.spec)
    except SpecError as error:
        raise _spec_error(error, body.spec) from None

    resolved, problems = check_spec_paths(
        resolve(spec),
        data_roots=settings.data_roots,
        model_roots=[*settings.data_roots, settings.output_root],
        models=settings.models,
        base_param="/spec",
    )
    if problems:
        first = problems[0]
        first.details = [_detail(problem) for problem in problems]
        raise first
    training = resolved.get("training")
    total_steps = training.get("max_steps") if isinstance(training, dict) else None
    return Submission(kind=str(resolved["kind"]), resolved_spec=resolved,
                      total_steps=total_steps)


def _check_executor_runs(kind: str, settings: Settings) -> None:
    """Refuse a kind this server's executor cannot run, before the job is stored."""
    if settings.executor == "local" and kind in known_kinds() and kind not in LOCAL_KINDS:
        raise KindUnsupported(
            f"job kind {kind!r} needs the Ray executor, and this server runs jobs with the "
            f"local executor (kinds {', '.join(LOCAL_KINDS)}); start the server with "
            "CRINGE_EXECUTOR=ray to run it",
            param="/spec/kind",
        )


def _detail(problem: DomainError) -> dict[str, Any]:
    from service.errors import http_status_and_code

    return {"param": problem.param, "message": problem.message,
            "type": http_status_and_code(problem)[1]}


def _spec_error(error: SpecError, spec: dict[str, Any]) -> DomainError:
    kind = spec.get("kind")
    if isinstance(kind, str) and kind not in known_kinds():
        return KindUnsupported(
            f"job kind {kind!r} is not supported by this server's spec schema; supported "
            f"kinds: {', '.join(known_kinds())}. Upgrade the server for newer kinds.",
            param="/spec/kind",
        )
    details = [
        {"param": "/spec" + problem["param"].rstrip("/"), "message": problem["message"],
         "type": problem["type"]}
        for problem in error.problems
    ]
    summary = "; ".join(f"{d['param']}: {d['message']}" for d in details[:5])
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return SpecInvalid(
        f"invalid job spec, {len(details)} problem(s): {summary}{more}",
        param=details[0]["param"] if details else "/spec",
        details=details,
    )


def check_metadata(metadata: dict[str, str], settings: Settings) -> None:
    problems = []
    if len(metadata) > settings.max_metadata_keys:
        problems.append(("/metadata", f"{len(metadata)} keys, over the limit of "
                         f"{settings.max_metadata_keys}"))
    for key, value in metadata.items():
        if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            problems.append((f"/metadata/{key}", f"key of {len(key)} characters; use 1 to "
                             f"{MAX_METADATA_KEY_CHARS}"))
        if len(value) > MAX_METADATA_VALUE_CHARS:
            problems.append((f"/metadata/{key}", f"value of {len(value)} characters, over "
                             f"the limit of {MAX_METADATA_VALUE_CHARS}"))
    size = json_size_bytes(metadata)
    if size > settings.max_metadata_bytes:
        problems.append(("/metadata", f"{size} bytes as JSON, over the limit of "
                         f"{settings.max_metadata_bytes}"))
    if problems:
        raise MetadataInvalid(
            "invalid metadata: " + "; ".join(f"{param}: {message}" for param, message in problems),
            param=problems[0][0],
            details=[{"param": p, "message": m, "type": "invalid_metadata"} for p, m in problems],
        )
