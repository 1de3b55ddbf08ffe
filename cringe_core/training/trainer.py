"""The single-process training loop; Ray workers run it once per rank.

A run lives in one output folder:
  resolved_spec.json   the spec with every default filled in
  data_report.json     what the data check found
  metrics.jsonl        one line per logged step
  checkpoints/         resumable checkpoints (see checkpoint.py)
  model/               the final policy, loadable with from_pretrained
  status.json          state, step and error, rewritten as the run goes
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cringe_core.data.check import prepare_dataset
from cringe_core.data.records import TokenizedPair
from cringe_core.losses.registry import get_loss
from cringe_core.models.completion_head import CompletionLogits
from cringe_core.models.loading import load_policy, load_reference, load_tokenizer
from cringe_core.spec import TrainJobSpec, resolve
from cringe_core.training import reference as reference_logps
from cringe_core.training.checkpoint import (
    TrainerState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from cringe_core.training.data_order import DataOrder
from cringe_core.training.heap_guard import HeapGuard
from cringe_core.training.metrics_log import MetricsLog
from cringe_core.training.optim import build_optimizer, build_scheduler
from cringe_core.training.step import AllReduce, MicroBatch, Row, StepSettings, collate, train_step

logger = logging.getLogger(__name__)


@dataclass
class Parallelism:
    """Position of this process among data-parallel ranks (one rank by default)."""

    rank: int = 0
    world_size: int = 1
    all_reduce: AllReduce | None = None
    # Wraps the loaded policy for the forward and backward passes, e.g. in
    # DistributedDataParallel; checkpoints always save the unwrapped model.
    wrap_model: Callable[[Any], Any] | None = None
    # Called on every rank after each checkpoint with the step, the folder rank 0 wrote
    # (None on the other ranks) and the step's metrics. Ray Train uses it to register the
    # checkpoint, and it also acts as the barrier that keeps ranks in step.
    on_checkpoint: Callable[[int, Path | None, dict[str, float]], None] | None = None
    # Resume from this checkpoint folder instead of the newest one under checkpoints/.
    resume_from: Path | None = None


@dataclass
class TrainResult:
    steps: int
    model_dir: Path
    last_metrics: dict[str, float] = field(default_factory=dict)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_data_kind(spec: TrainJobSpec, rows: Sequence[Row]) -> None:
    loss = get_loss(spec.loss.name)
    kind = "pairs" if isinstance(rows[0], TokenizedPair) else "binary"
    if kind not in loss.data_kinds:
        accepted = " or ".join(sorted(loss.data_kinds))
        raise ValueError(
            f"loss {spec.loss.name!r} needs {accepted} data, but {spec.dataset.path} contains "
            f"{kind} rows; use binary_cringe for binary feedback, or a preference-pair file"
        )


class Trainer:
    def __init__(
        self,
        spec: TrainJobSpec,
        output_dir: Path,
        device: torch.device | None = None,
        parallelism: Parallelism | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.spec = spec
        self.output_dir = Path(output_dir)
        self.device = device or default_device()
        self.parallel = parallelism or Parallelism()
        per_rank = spec.training.batch_size // self.parallel.world_size
        if (
            spec.training.batch_size % self.parallel.world_size
            or per_rank % spec.training.micro_batch_size
        ):
            raise ValueError(
                f"training.batch_size {spec.training.batch_size} must split evenly into "
                f"{self.parallel.world_size} workers x micro_batch_size "
                f"{spec.training.micro_batch_size}; change one of them"
            )
        is_terminal = sys.stderr.isatty()
        self.show_progress = is_terminal if show_progress is None else show_progress
        self.show_progress = self.show_progress and self.parallel.rank == 0
        self.loss = get_loss(spec.loss.name)
        self.is_main = self.parallel.rank == 0

    # ---- set-up --------------------------------------------------------------------

    def _write_json(self, name: str, data: Any) -> None:
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / name).write_text(json.dumps(data, indent=2), encoding="utf-8")

    def write_status(self, state: str, step: int, error: str | None = None) -> None:
        status = {"state": state, "step": step, "max_steps": self.spec.training.max_steps}
        if error is not None:
            status["error"] = error
        self._write_json("status.json", status)

    def prepare_data(self) -> None:
        """Load the tokenizer, read and check the data set exactly as training uses it."""
        self.tokenizer = load_tokenizer(self.spec.model.name, self.spec.model.revision)
        self.rows, report = prepare_dataset(
            self.spec.dataset, self.tokenizer, self.spec.training.max_length
        )
        self._write_json("data_report.json", report.to_dict())
        _check_data_kind(self.spec, self.rows)

    def prepare_model(self) -> None:
        torch.manual_seed(self.spec.seed)
        self.model = load_policy(self.spec.model, self.device)
        self.model.train()
        self.optimizer = build_optimizer(self.model, self.spec.training)
        self.scheduler = build_scheduler(self.optimizer, self.spec.training)
        self.reference_model = None
        self.reference_table: torch.Tensor | None = None

        if not self.loss.needs_reference:
            return
        if self.spec.loss.reference == "live":  # type: ignore[union-attr]
            self.reference_model = load_reference(self.spec.model, self.device)
            return
        training = self.spec.training
        self.reference_table = reference_logps.load_or_compute(
            self.output_dir / "reference_logps.pt",
            lambda: reference_logps.precompute_reference_logps(
                self.model,
                self.rows,  # type: ignore[arg-type]
                self.tokenizer.pad_token_id,
                training.micro_batch_size,
                training.precision,
                self.device,
            ),
            len(self.rows),
        )

    # ---- the loop ------------------------------------------------------------------

    def _micro_batches(self, indices: list[int]) -> list[MicroBatch]:
        """Split this rank's share of the global batch into micro-batches."""
        per_rank = len(indices) // self.parallel.world_size
        mine = indices[self.parallel.rank * per_rank : (self.parallel.rank + 1) * per_rank]
        size = self.spec.training.micro_batch_size
        micro_batches = []
        for start in range(0, len(mine), size):
            chunk = mine[start : start + size]
            micro = collate([self.rows[i] for i in chunk], self.tokenizer.pad_token_id, self.device)
            if self.reference_table is not None:
                table = self.reference_table[chunk]  # (b, 2)
                # Pairwise layout: all chosen rows first, then all rejected rows.
                micro.reference_logps = torch.cat([table[:, 0], table[:, 1]]).to(self.device)
            micro_batches.append(micro)
        return micro_batches

    def _generator_for(self, step: int) -> Any:
        # Cringe sampling is seeded from the job seed, the step, the rank and the
        # micro-batch, so reruns and resumed runs draw the same candidates.
        def make(micro_index: int) -> torch.Generator:
            seed = hash((self.spec.seed, step, self.parallel.rank, micro_index)) % (2**63)
            return torch.Generator(device=self.device).manual_seed(seed)

        return make

    def run(
        self, resume: bool = False, should_stop: Callable[[int], bool] | None = None
    ) -> TrainResult:
        """Train to `max_steps`, or until `should_stop(step)` is true after a step.

        A stop saves a checkpoint at that step first, so `run(resume=True)` continues
        exactly where it ended.
        """
        training = self.spec.training
        self._write_json("resolved_spec.json", resolve(self.spec))
        self.write_status("validating", 0)
        self.prepare_data()
        self.prepare_model()

        state = TrainerState(step=0, consumed_rows=0, seed=self.spec.seed)
        checkpoints = self.output_dir / "checkpoints"
        found = latest_checkpoint(checkpoints) if resume else None
        if resume and self.parallel.resume_from is not None:
            found = self.parallel.resume_from
        if found is not None:
            state = load_checkpoint(found, self.model, self.optimizer, self.scheduler)
        # Wrap after any resume so every rank starts from the same restored weights. The
        # LM head wrapper goes inside DDP, so DDP's forward still runs every step.
        head_model = CompletionLogits(self.model)
        wrapped = self.parallel.wrap_model
        train_model = wrapped(head_model) if wrapped is not None else head_model
        metrics_log = MetricsLog(self.output_dir / "metrics.jsonl")
        if self.is_main:
            metrics_log.truncate_after(state.step)

        order = DataOrder(len(self.rows), self.spec.seed, consumed=state.consumed_rows)
        settings = StepSettings(
            loss=self.loss,
            loss_spec=self.spec.loss,
            precision=training.precision,
            max_grad_norm=training.max_grad_norm,
            world_size=self.parallel.world_size,
            all_reduce=self.parallel.all_reduce,
        )
        heap_guard = HeapGuard.for_this_process()
        if heap_guard is not None:
            settings.memory_probe = heap_guard.note_in_use
        progress = self._progress_bar(state.step)
        self.write_status("running", state.step)
        metrics: dict[str, float] = {}

        for step in range(state.step + 1, training.max_steps + 1):
            started = time.perf_counter()
            learning_rate = float(self.scheduler.get_last_lr()[0])
            micro_batches = self._micro_batches(order.take(training.batch_size))
            metrics = train_step(
                train_model,
                micro_batches,
                settings,
                self.optimizer,
                self.scheduler,
                self._generator_for(step),
                self.reference_model,
            )
            if heap_guard is not None:
                heap_guard.step_finished()
            elapsed_s = time.perf_counter() - started
            metrics.update(
                learning_rate=learning_rate,
                epoch=order.consumed / order.num_rows,
                step_time_s=elapsed_s,
                pairs_per_s=training.batch_size / elapsed_s,
            )
            if self.is_main and (
                step % training.log_every_steps == 0 or step == training.max_steps
            ):
                metrics_log.write(step, metrics)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{metrics['loss']:.4f}")

            state = TrainerState(step=step, consumed_rows=order.consumed, seed=self.spec.seed)
            every = training.checkpoint_every_steps
            stopping = should_stop is not None and should_stop(step)
            due = (every and step % every == 0) or step == training.max_steps or stopping
            if due:
                saved = None
                if self.is_main:
                    saved = save_checkpoint(
                        checkpoints, self.model, self.optimizer, self.scheduler, state
                    )
                    self.write_status("running", step)
                if self.parallel.on_checkpoint is not None:
                    self.parallel.on_checkpoint(step, saved, metrics)
            if stopping and step < training.max_steps:
                if progress is not None:
                    progress.close()
                self.write_status("stopped", step)
                return TrainResult(steps=step, model_dir=checkpoints, last_metrics=metrics)

        if progress is not None:
            progress.close()
        model_dir = self.output_dir / "model"
        if self.is_main:
            self._save_final(model_dir)
            self.write_status("succeeded", state.step)
        return TrainResult(steps=state.step, model_dir=model_dir, last_metrics=metrics)

    def _save_final(self, model_dir: Path) -> None:
        model = (
            self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        )
        model.save_pretrained(model_dir)
        self.tokenizer.save_pretrained(model_dir)

    def _progress_bar(self, initial: int) -> Any:
        if not self.show_progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.spec.training.max_steps, initial=initial, unit="step")
