"""`cringe submit`, `jobs`, `status`, `watch` and `cancel`: the API from a terminal.

Each handler returns the exit code. Server errors are printed as their message and
field details, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from service.client.api import ApiClient, ApiError, ApiUnreachable
from service.client.config import ConfigError, load_config
from service.client.render import event_line, job_detail, jobs_table, progress_bar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 3
EXIT_INTERRUPTED = 130
POLL_INTERVAL_S = 1.0
_TERMINAL_EXIT = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}

Handler = Callable[[ApiClient, argparse.Namespace], int]


class SpecFileError(ValueError):
    """The spec file cannot be read or is not a YAML or JSON mapping."""


def _absolute_paths(node: Any, base: Path) -> Any:
    """Resolve every relative `path` value against `base`, as `cringe train` does, so the
    server reads the file the user meant and not one relative to its own folder."""
    if isinstance(node, dict):
        return {
            key: str((base / value).resolve())
            if key == "path" and isinstance(value, str) and value and not Path(value).is_absolute()
            and "://" not in value
            else _absolute_paths(value, base)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_absolute_paths(value, base) for value in node]
    return node


def read_spec_file(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise SpecFileError(f"cannot read spec file {path}: {error}") from error
    except yaml.YAMLError as error:
        raise SpecFileError(f"spec file {path} is not valid YAML or JSON: {error}") from error
    if not isinstance(spec, dict):
        raise SpecFileError(f"spec file {path} contains a {type(spec).__name__}, not a mapping; "
                            "a spec starts with fields such as `kind:` and `dataset:`")
    return _absolute_paths(spec, Path.cwd())


def _metadata(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise SpecFileError(f"--metadata {pair!r} is not NAME=VALUE; write e.g. "
                                "--metadata team=alignment")
        labels[name] = value
    return labels


def _submit(client: ApiClient, args: argparse.Namespace) -> int:
    try:
        spec = read_spec_file(Path(args.spec))
        labels = _metadata(args.metadata)
    except SpecFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    job = client.submit(spec, labels, args.idempotency_key)
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        print(job["id"])
        print(f"submitted {job['kind']} job {job['id']}, status {job['status']}",
              file=sys.stderr)
    if args.watch:
        return _follow(client, job["id"])
    return EXIT_OK


def _jobs(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.list_jobs(args.status, args.kind, args.limit)
    if args.json:
        print(json.dumps(page, indent=2))
    elif not page["data"]:
        print("no jobs", file=sys.stderr)
    else:
        print(jobs_table(page["data"]))
    return EXIT_OK


def _status(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.get_job(args.job_id)
    evaluations = client.evaluations(args.job_id)
    if args.json:
        print(json.dumps({**job, "evaluations": evaluations}, indent=2))
    else:
        print(job_detail(job, evaluations))
    return EXIT_OK


def _follow(client: ApiClient, job_id: str) -> int:
    """Print events and a progress bar until the job ends; exit with its outcome."""
    interactive = sys.stderr.isatty()
    last_seq, last_bar = 0, ""
    while True:
        job = client.get_job(job_id)
        for event in client.events_after(job_id, last_seq):
            if interactive and last_bar:
                print("\r\033[K", end="", file=sys.stderr)
                last_bar = ""
            print(event_line(event), flush=True)
            last_seq = event["seq"]
        bar = progress_bar(job)
        if bar != last_bar:
            if interactive:
                print(f"\r\033[K{bar}", end="", file=sys.stderr, flush=True)
            else:
                print(bar, file=sys.stderr, flush=True)
            last_bar = bar
        if job["is_terminal"]:
            # A terminal status commits with its event, so one more read gets every event.
            for event in client.events_after(job_id, last_seq):
                print(event_line(event), flush=True)
            if interactive:
                print(file=sys.stderr)
            if job.get("error"):
                print(f"error: {job['error']['message']}", file=sys.stderr)
            return _TERMINAL_EXIT.get(job["status"], EXIT_FAILED)
        time.sleep(POLL_INTERVAL_S)


def _watch(client: ApiClient, args: argparse.Namespace) -> int:
    return _follow(client, args.job_id)


def _cancel(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.cancel(args.job_id, args.idempotency_key)
    print(f"job {job['id']} is {job['status']}")
    return EXIT_OK


def _print_api_error(error: ApiError) -> None:
    print(f"error: {error}", file=sys.stderr)
    for detail in error.details:
        where = detail.get("param") or (f"row {detail['row']}" if "row" in detail else "")
        text = detail.get("message") or json.dumps(detail)
        print(f"  {where}: {text}" if where else f"  {text}", file=sys.stderr)


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            client = ApiClient(load_config(args.api_url, args.api_key))
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            return handler(client, args)
        except ApiError as error:
            _print_api_error(error)
            return EXIT_BAD_INPUT if error.status in (400, 413, 415, 422) else EXIT_FAILED
        except ApiUnreachable as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("\nstopped watching; the job goes on (`cringe cancel ID` stops it)",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            client.close()

    return run


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", help="server URL (default: $CRINGE_API_URL, the config "
                        "file, or http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="API key (default: $CRINGE_API_KEY or the config "
                        "file); prefer the variable, since a flag shows in the process list")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to the `cringe` parser's subcommands."""
    submit = subparsers.add_parser("submit", help="submit a job spec (YAML or JSON) to the API")
    submit.add_argument("spec", help="path to the spec; relative data paths resolve from "
                        "the current folder")
    submit.add_argument("--metadata", action="append", default=[], metavar="NAME=VALUE",
                        help="a label stored with the job (repeatable)")
    submit.add_argument("--idempotency-key", help="reuse to make a repeated submit return "
                        "the first job (default: a new random key, kept across retries)")
    submit.add_argument("--watch", action="store_true", help="follow the job until it ends")
    submit.add_argument("--json", action="store_true", help="print the job as JSON")
    submit.set_defaults(handler=_run(_submit))

    jobs = subparsers.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--status", help="only jobs in this state, e.g. running")
    jobs.add_argument("--kind", help="only this kind: train, iterate, reward_model, evaluate")
    jobs.add_argument("--limit", type=int, default=20, help="jobs to show (default 20)")
    jobs.add_argument("--json", action="store_true", help="print the page as JSON")
    jobs.set_defaults(handler=_run(_jobs))

    status = subparsers.add_parser("status", help="show one job and its evaluations")
    status.add_argument("job_id", help="the job's id, job_...")
    status.add_argument("--json", action="store_true", help="print the job as JSON")
    status.set_defaults(handler=_run(_status))

    watch = subparsers.add_parser(
        "watch", help="follow a job until it ends; exit 0 succeeded, 1 failed, 3 cancelled"
    )
    watch.add_argument("job_id", help="the job's id, job_...")
    watch.set_defaults(handler=_run(_watch))

    cancel = subparsers.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id", help="the job's id, job_...")
    cancel.add_argument("--idempotency-key", help="makes a repeated cancel a no-op")
    cancel.set_defaults(handler=_run(_cancel))

    for command in (submit, jobs, status, watch, cancel):
        _connection_options(command)
