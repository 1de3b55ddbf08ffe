"""Train a reward model with the Bradley-Terry loss, on one process.

A run lives in one output folder, laid out like a policy training run:
  resolved_spec.json   the spec with every default filled in
  data_report.json     pairs read, dropped and skipped per data set
  split.json           the held-out prompts (an evaluate job can restrict itself to them)
  metrics.jsonl        one line per logged step
  checkpoints/         resumable checkpoints
  model/               the reward model and its tokenizer, loadable with from_pretrained
  eval.json            held-out accuracy and mean margin (absent when eval_fraction is 0)
  status.json          state, step and error, rewritten as the run goes
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cringe_core.evaluation.reward_preference import reward_preference
from cringe_core.models.reward import load_reward_model, load_reward_tokenizer
from cringe_core.reward.data import SPLIT_FILE, read_preference_sets, split_by_prompt, write_split
from cringe_core.reward.inputs import RewardInput, collate_reward_inputs
from cringe_core.reward.loss import bradley_terry_loss
from cringe_core.reward.scoring import RewardScorer, reward_scores
from cringe_core.spec import RewardModelJobSpec, resolve
from cringe_core.training.checkpoint import (
    TrainerState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from cringe_core.training.data_order import DataOrder
from cringe_core.training.metrics_log import MetricsLog
from cringe_core.training.optim import build_optimizer, build_scheduler
from cringe_core.training.step import autocast_for
from cringe_core.training.trainer import default_device

logger = logging.getLogger(__name__)


@dataclass
class RewardTrainResult:
    steps: int
    model_dir: Path
    last_metrics: dict[str, float] = field(default_factory=dict)
    heldout: dict[str, Any] | None = None  # accuracy and mean margin on held-out prompts


class RewardTrainer:
    def __init__(
        self,
        spec: RewardModelJobSpec,
        output_dir: Path,
        device: torch.device | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.spec = spec
        self.output_dir = Path(output_dir)
        self.device = device or default_device()
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress

    def _write_json(self, name: str, data: Any) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / name).write_text(json.dumps(data, indent=2), encoding="utf-8")

    def write_status(self, state: str, step: int, error: str | None = None) -> None:
        status: dict[str, Any] = {
            "state": state,
            "step": step,
            "max_steps": self.spec.training.max_steps,
        }
        if error is not None:
            status["error"] = error
        self._write_json("status.json", status)

    def prepare_data(self) -> None:
        """Read the pairs, split them by prompt and encode the training side."""
        self.tokenizer = load_reward_tokenizer(self.spec.model.name, self.spec.model.revision)
        data = read_preference_sets(self.spec.dataset)
        self._write_json("data_report.json", data.report)

        self.split = split_by_prompt(data.records, self.spec.eval_fraction, self.spec.seed)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_split(self.output_dir / SPLIT_FILE, self.split)
        if not self.split.train:
            raise ValueError(
                f"eval_fraction {self.spec.eval_fraction} holds out every prompt, so no pair is "
                "left to train on; lower eval_fraction"
            )
        logger.info(
            "reward data: %d training pairs (%d prompts), %d held-out pairs (%d prompts)",
            len(self.split.train),
            self.split.train_prompt_count,
            len(self.split.heldout),
            len(self.split.heldout_prompts),
        )

        scorer = self._scorer(model=None)
        prompts = [pair.prompt for pair in self.split.train]
        self.chosen = scorer.encode(prompts, [pair.chosen for pair in self.split.train])
        self.rejected = scorer.encode(prompts, [pair.rejected for pair in self.split.train])

    def _scorer(self, model: Any) -> RewardScorer:
        training = self.spec.training
        return RewardScorer(
            model,
            self.tokenizer,
            training.max_length,
            batch_size=2 * training.micro_batch_size,
            precision=training.precision,
        )

    def prepare_model(self) -> None:
        torch.manual_seed(self.spec.seed)
        self.model = load_reward_model(self.spec.model, self.tokenizer.pad_token_id, self.device)
        self.model.train()
        self.optimizer = build_optimizer(self.model, self.spec.training)
        self.scheduler = build_scheduler(self.optimizer, self.spec.training)

    def _batch(self, chunk: list[int]) -> dict[str, torch.Tensor]:
        # Chosen rows first, then rejected: (2b, T), as the policy batches lay out pairs.
        rows: list[RewardInput] = [self.chosen[i] for i in chunk] + [
            self.rejected[i] for i in chunk
        ]
        batch = collate_reward_inputs(rows, self.tokenizer.pad_token_id)
        return {key: value.to(self.device) for key, value in batch.items()}

    def train_step(self, indices: list[int]) -> dict[str, float]:
        """Run one optimizer step over the pairs `indices`, accumulated over micro-batches."""
        training = self.spec.training
        totals: dict[str, float] = {}
        loss_sum = 0.0
        for start in range(0, len(indices), training.micro_batch_size):
            chunk = indices[start : start + training.micro_batch_size]
            with autocast_for(training.precision, self.device):
                rewards = reward_scores(self.model, self._batch(chunk))  # (2b,)
            chosen, rejected = rewards.chunk(2)  # (b,), (b,)
            loss, metrics = bradley_terry_loss(chosen, rejected, normalizer=len(indices))
            loss.backward()
            loss_sum += float(loss.detach())
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value * len(chunk)

        parameters = [p for p in self.model.parameters() if p.grad is not None]
        limit = training.max_grad_norm if training.max_grad_norm is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, limit))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        step_metrics = {name: value / len(indices) for name, value in totals.items()}
        step_metrics.update(loss=loss_sum, grad_norm=grad_norm)
        return step_metrics

    def run(self, resume: bool = False) -> RewardTrainResult:
        """Train to `max_steps`, save the model, then score the held-out pairs."""
        training = self.spec.training
        self._write_json("resolved_spec.json", resolve(self.spec))
        self.write_status("validating", 0)
        self.prepare_data()
        self.prepare_model()

        state = TrainerState(step=0, consumed_rows=0, seed=self.spec.seed)
        checkpoints = self.output_dir / "checkpoints"
        found = latest_checkpoint(checkpoints) if resume else None
        if found is not None:
            state = load_checkpoint(found, self.model, self.optimizer, self.scheduler)
        metrics_log = MetricsLog(self.output_dir / "metrics.jsonl")
        metrics_log.truncate_after(state.step)

        order = DataOrder(len(self.chosen), self.spec.seed, consumed=state.consumed_rows)
        progress = self._progress_bar(state.step)
        self.write_status("running", state.step)
        metrics: dict[str, float] = {}
        for step in range(state.step + 1, training.max_steps + 1):
            started = time.perf_counter()
            learning_rate = float(self.scheduler.get_last_lr()[0])
            metrics = self.train_step(order.take(training.batch_size))
            elapsed_s = time.perf_counter() - started
            metrics.update(
                learning_rate=learning_rate,
                epoch=order.consumed / order.num_rows,
                step_time_s=elapsed_s,
                pairs_per_s=training.batch_size / elapsed_s,
            )
            if step % training.log_every_steps == 0 or step == training.max_steps:
                metrics_log.write(step, metrics)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{metrics['loss']:.4f}")

            state = TrainerState(step=step, consumed_rows=order.consumed, seed=self.spec.seed)
            every = training.checkpoint_every_steps
            if (every and step % every == 0) or step == training.max_steps:
                save_checkpoint(checkpoints, self.model, self.optimizer, self.scheduler, state)
                self.write_status("running", step)
        if progress is not None:
            progress.close()

        model_dir = self.output_dir / "model"
        self._save_final(model_dir)
        heldout = self.evaluate_heldout()
        self.write_status("succeeded", state.step)
        return RewardTrainResult(
            steps=state.step, model_dir=model_dir, last_metrics=metrics, heldout=heldout
        )

    def evaluate_heldout(self) -> dict[str, Any] | None:
        """Score the held-out pairs, write eval.json and return it; None without a split."""
        if not self.split.heldout:
            return None
        started = time.perf_counter()
        result = reward_preference(self._scorer(self.model), self.split.heldout)
        heldout = {
            **result.to_dict(),
            "prompts": len(self.split.heldout_prompts),
            "eval_time_s": time.perf_counter() - started,
        }
        self._write_json("eval.json", {"heldout": heldout})
        logger.info(
            "held-out accuracy %.4f, mean margin %.4f on %d pairs",
            result.accuracy,
            result.mean_margin,
            len(result.margins),
        )
        return heldout

    def _save_final(self, model_dir: Path) -> None:
        merged = hasattr(self.model, "merge_and_unload")
        model = self.model.merge_and_unload() if merged else self.model
        model.save_pretrained(model_dir)
        self.tokenizer.save_pretrained(model_dir)
        self.model = model

    def _progress_bar(self, initial: int) -> Any:
        if not self.show_progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.spec.training.max_steps, initial=initial, unit="step")
