"""The `cringe` command line.

Training and data commands live here. Other packages of the project add their
subcommands (`serve`, `submit`, ...) through the `cringe.cli` entry-point group, so this
package never imports the web service or Ray.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

from cringe_core import process_env

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _train(args: argparse.Namespace) -> int:
    import torch

    from cringe_core.data.check import DataError
    from cringe_core.models.loading import ModelNotFoundError
    from cringe_core.spec import SpecError, load_spec_file
    from cringe_core.training.trainer import Trainer

    try:
        spec = load_spec_file(args.spec)
    except (SpecError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if spec.kind != "train":
        from cringe_core.cli.eval_command import train_other_kind

        return train_other_kind(spec, args)

    if spec.scaling.num_workers > 1 or (spec.scaling.use_gpu and not torch.cuda.is_available()):
        print(
            f"error: scaling.num_workers = {spec.scaling.num_workers}, scaling.use_gpu = "
            f"{spec.scaling.use_gpu}: `cringe train` runs one process on this machine; "
            "set num_workers to 1 (and use_gpu to false without a GPU), or submit the job "
            "to the service, which runs it on Ray workers",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    output_dir = Path(args.output_dir or Path("runs") / Path(args.spec).stem)
    device = torch.device(args.device) if args.device else None
    trainer = Trainer(spec, output_dir, device=device)
    try:
        result = trainer.run(resume=args.resume)
    except (DataError, ModelNotFoundError, ValueError) as error:
        trainer.write_status("failed", 0, error=str(error))
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        trainer.write_status("failed", 0, error=f"{type(error).__name__}: {error}")
        raise

    print(f"trained {result.steps} steps; model saved to {result.model_dir}")
    summary = {k: round(v, 4) for k, v in result.last_metrics.items()}
    print(json.dumps(summary))
    return EXIT_OK


def _data_check(args: argparse.Namespace) -> int:
    from cringe_core.data.check_cli import run_data_check

    return run_data_check(
        args.file, args.model, args.max_length, format=args.format, as_json=args.json
    )


def _spec_schema(args: argparse.Namespace) -> int:
    from cringe_core.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _spec_reference(args: argparse.Namespace) -> int:
    from cringe_core.spec_reference import replace_section, spec_reference

    section = spec_reference()
    if args.write is None:
        print(section, end="")
        return EXIT_OK
    path = Path(args.write)
    try:
        updated = replace_section(path.read_text(encoding="utf-8"), section)
    except (OSError, ValueError) as error:
        print(f"error: cannot update {path}: {error}", file=sys.stderr)
        return EXIT_FAILED
    path.write_text(updated, encoding="utf-8")
    print(f"wrote the spec reference into {path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from cringe_core.spec import DEFAULT_POLICY

    parser = argparse.ArgumentParser(
        prog="cringe", description="Preference optimization with the Pairwise Cringe Loss."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="run a job spec (YAML) on this machine")
    train.add_argument("spec", help="path to the job spec, YAML or JSON")
    train.add_argument(
        "--output-dir", help="folder for metrics, checkpoints and the model (default runs/SPEC)"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint there"
    )
    train.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda if any)")
    train.set_defaults(handler=_train)

    data = commands.add_parser("data", help="inspect training data")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    check = data_commands.add_parser(
        "check", help="tokenize a data file exactly as training will and report defects"
    )
    check.add_argument("file", help="JSON, JSONL or gzip file, or a hub data set name")
    check.add_argument("--model", default=DEFAULT_POLICY, help="model whose tokenizer to use")
    check.add_argument("--max-length", type=int, default=1024, help="tokens per row")
    check.add_argument("--format", default="auto", help="record layout (default: detect it)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=_data_check)

    spec = commands.add_parser("spec", help="job spec tools")
    spec_commands = spec.add_subparsers(dest="spec_command", required=True, metavar="COMMAND")
    schema = spec_commands.add_parser("schema", help="print the job spec's JSON schema")
    schema.set_defaults(handler=_spec_schema)
    reference = spec_commands.add_parser(
        "reference", help="print every spec field with its type, default and range (Markdown)"
    )
    reference.add_argument("--write", metavar="FILE", help="replace the reference between the "
                           "spec-reference markers of FILE (e.g. README.md) instead of printing")
    reference.set_defaults(handler=_spec_reference)

    from cringe_core.cli.eval_command import add_eval_command

    add_eval_command(commands)

    for extension in entry_points(group="cringe.cli"):
        extension.load()(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before any subcommand imports torch, which reads these variables once.
    process_env.apply_to_this_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Libraries below log at INFO on every load; keep the console to this project's records.
    for noisy in ("transformers", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
