"""`cringe eval SPEC` and the reward-model branch of `cringe train SPEC`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def add_eval_command(commands: Any) -> None:
    """Register `cringe eval` on the subcommand parsers of the main parser."""
    parser = commands.add_parser(
        "eval",
        help="run an evaluate job spec: win rate against references, judged by a reward model",
    )
    parser.add_argument("spec", help="path to the evaluate job spec, YAML or JSON")
    parser.add_argument(
        "--output-dir", help="folder for results.json and completions.jsonl (default runs/SPEC)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda if any)")
    parser.set_defaults(handler=run_eval_command)


def _device(name: str | None) -> Any:
    import torch

    from cringe_core.training.trainer import default_device

    return torch.device(name) if name else default_device()


def _output_dir(args: argparse.Namespace) -> Path:
    return Path(args.output_dir or Path("runs") / Path(args.spec).stem)


def run_eval_command(args: argparse.Namespace) -> int:
    from cringe_core.data.defects import DataError
    from cringe_core.evaluation.job import evaluate, write_status
    from cringe_core.evaluation.report import format_evaluation
    from cringe_core.models.loading import ModelNotFoundError
    from cringe_core.spec import EvaluateJobSpec, SpecError, load_spec_file

    try:
        spec = load_spec_file(args.spec)
    except (SpecError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not isinstance(spec, EvaluateJobSpec):
        print(
            f"error: {args.spec} is a {spec.kind!r} job, but `cringe eval` runs kind 'evaluate'; "
            "run it with `cringe train`, or set kind: evaluate",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT

    output_dir = _output_dir(args)
    try:
        results = evaluate(spec, output_dir, _device(args.device))
    except (DataError, ModelNotFoundError, ValueError) as error:
        write_status(output_dir, "failed", str(error))
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        write_status(output_dir, "failed", f"{type(error).__name__}: {error}")
        raise

    print(json.dumps(results, indent=2) if args.json else format_evaluation(results))
    return EXIT_OK


def train_other_kind(spec: Any, args: argparse.Namespace) -> int:
    """Run `cringe train` for a spec whose kind is not 'train'."""
    from cringe_core.spec import RewardModelJobSpec

    if isinstance(spec, RewardModelJobSpec):
        return train_reward_model(spec, args)
    hint = (
        f"run it with `cringe eval {args.spec}`"
        if spec.kind == "evaluate"
        else ("`cringe train` runs the kinds 'train' and 'reward_model'")
    )
    print(f"error: {args.spec} is a {spec.kind!r} job; {hint}", file=sys.stderr)
    return EXIT_BAD_INPUT


def train_reward_model(spec: Any, args: argparse.Namespace) -> int:
    from cringe_core.data.defects import DataError
    from cringe_core.evaluation.report import format_reward_training
    from cringe_core.models.loading import ModelNotFoundError
    from cringe_core.reward.trainer import RewardTrainer

    trainer = RewardTrainer(spec, _output_dir(args), device=_device(args.device))
    try:
        result = trainer.run(resume=args.resume)
    except (DataError, ModelNotFoundError, ValueError) as error:
        trainer.write_status("failed", 0, error=str(error))
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        trainer.write_status("failed", 0, error=f"{type(error).__name__}: {error}")
        raise

    print(format_reward_training(result.steps, str(result.model_dir), result.heldout))
    summary = {k: round(v, 4) for k, v in result.last_metrics.items()}
    print(json.dumps(summary))
    return EXIT_OK
