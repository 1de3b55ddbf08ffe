"""`iterate` jobs: rounds of generate -> score -> build pairs -> train -> evaluate.

Round 0 trains the starting policy on the given pairs D0. Each later round samples
`samples_per_prompt` completions per training prompt from the previous round's policy,
scores them with the reward model, keeps (best, worst) as a new pair, and trains on D0
plus every pair generated so far. Every round ends with a win-rate evaluation.

Layout under the job's output folder, one folder per round:
  reward_model/                   the reward model, when the spec asks to train one
  rounds/round-01/completions.jsonl   samples with their seeds          (generate)
  rounds/round-01/scored.jsonl        the same rows with their reward   (score)
  rounds/round-01/pairs.jsonl         pairs kept, and train_data.jsonl  (pairs)
  rounds/round-01/train/              the trainer's run folder; model/  (train)
  rounds/round-01/evaluation/         results.json                      (evaluate)
A phase counts as done when its output exists, so a restarted job resumes at the first
unfinished phase of the first unfinished round; an unfinished train phase resumes from
its newest checkpoint.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import ray

from cringe_core.reward.data import prompt_key, read_preference_sets
from cringe_core.spec import (
    DatasetSpec,
    EvalSetReference,
    EvaluateJobSpec,
    GenerationSpec,
    IterateJobSpec,
    JudgeSpec,
    ModelSpec,
    RewardModelJobSpec,
    TrainJobSpec,
)
from workers.logs import stamped
from workers.pairs import best_worst_pairs, read_jsonl, write_json, write_jsonl
from workers.ray_train import fit_train_job
from workers.scorer import ScorerPool
from workers.tasks import evaluate_task, generate_task, train_reward_model_task

log = stamped(__name__)

PHASES_ROUND_0 = ("train", "evaluate")
PHASES = ("generate", "score", "pairs", "train", "evaluate")


class RoundObserver(Protocol):
    """Receives progress as the rounds run; the REST reporter implements it."""

    def phase_started(self, round_index: int, phase: str) -> None: ...

    def iteration(self, round_index: int, fields: dict[str, Any]) -> None: ...

    def evaluation(self, round_index: int, results: dict[str, Any], candidate: str) -> None: ...

    def training(self, round_index: int, run_dir: Path,
                 total_steps: int) -> AbstractContextManager[Any]:
        """Wraps a round's training; the REST reporter streams its metrics meanwhile."""
        ...


class NullObserver:
    def phase_started(self, round_index: int, phase: str) -> None:
        return None

    def iteration(self, round_index: int, fields: dict[str, Any]) -> None:
        return None

    def evaluation(self, round_index: int, results: dict[str, Any], candidate: str) -> None:
        return None

    def training(self, round_index: int, run_dir: Path,
                 total_steps: int) -> AbstractContextManager[Any]:
        return nullcontext()


@dataclass(frozen=True)
class RoundPaths:
    root: Path

    @property
    def completions(self) -> Path:
        return self.root / "completions.jsonl"

    @property
    def scored(self) -> Path:
        return self.root / "scored.jsonl"

    @property
    def pairs(self) -> Path:
        return self.root / "pairs.jsonl"

    @property
    def train_data(self) -> Path:
        return self.root / "train_data.jsonl"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        return self.train / "model"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    def done(self, phase: str) -> bool:
        """Whether `phase` of this round already left its complete output."""
        if phase == "train":
            status = self.train / "status.json"
            return status.exists() and json.loads(status.read_text())["state"] == "succeeded"
        output = {
            "generate": self.completions,
            "score": self.scored,
            "pairs": self.pairs,
            "evaluate": self.evaluation / "results.json",
        }[phase]
        return output.exists()


def round_paths(output_dir: Path, round_index: int) -> RoundPaths:
    return RoundPaths(output_dir / "rounds" / f"round-{round_index:02d}")


def first_unfinished(spec: IterateJobSpec, output_dir: Path) -> tuple[int, str] | None:
    """The (round, phase) a restarted job resumes at, or None when every round is done."""
    for round_index in range(spec.rounds + 1):
        paths = round_paths(output_dir, round_index)
        for phase in PHASES_ROUND_0 if round_index == 0 else PHASES:
            if not paths.done(phase):
                return round_index, phase
    return None


class IteratePipeline:
    """Runs the rounds of one iterate job on a connected Ray cluster."""

    def __init__(self, spec: IterateJobSpec, output_dir: Path,
                 observer: RoundObserver | None = None) -> None:
        self.spec = spec
        self.output_dir = Path(output_dir).resolve()
        self.observer = observer or NullObserver()

    def run(self) -> list[dict[str, Any]]:
        """Run every unfinished phase; return each round's evaluation summary."""
        write_json(self.output_dir / "resolved_spec.json", self.spec.model_dump(mode="json"))
        judge = self._judge()
        summaries = []
        for round_index in range(self.spec.rounds + 1):
            paths = round_paths(self.output_dir, round_index)
            phases = PHASES_ROUND_0 if round_index == 0 else PHASES
            for phase in phases:
                if paths.done(phase):
                    log.info("round %d: %s already done, skipped", round_index, phase)
                    continue
                self.observer.phase_started(round_index, phase)
                log.info("round %d: %s", round_index, phase)
                getattr(self, f"_{phase}")(round_index, paths, judge)
            summaries.append(self._report_round(round_index, paths))
        return summaries

    # ---- set-up ---------------------------------------------------------------------

    def _judge(self) -> JudgeSpec:
        """The reward model that scores and judges, training it first if the spec asks."""
        reward = self.spec.reward_model
        if isinstance(reward, JudgeSpec):
            return reward
        folder = self.output_dir / "reward_model"
        status = folder / "status.json"
        if not (status.exists() and json.loads(status.read_text())["state"] == "succeeded"):
            self.observer.phase_started(0, "reward_model")
            ray.get(train_reward_model_task.remote(reward.model_dump(mode="json"), str(folder)))
        return JudgeSpec(name=str(folder / "model"), max_length=_reward_max_length(reward),
                         batch_size=self.spec.scorer.batch_size)

    def _training_prompts(self) -> list[list[dict[str, Any]]]:
        """Distinct prompts of D0 in file order, at most `max_prompts`."""
        records = read_preference_sets([self.spec.dataset]).records
        seen: set[str] = set()
        prompts = []
        for record in records:
            key = prompt_key(record.prompt)
            if key not in seen:
                seen.add(key)
                prompts.append([dict(message) for message in record.prompt])
        return prompts[: self.spec.max_prompts] if self.spec.max_prompts else prompts

    def _policy_before(self, round_index: int) -> str:
        if round_index == 0 or self.spec.init == "initial":
            return self.spec.model.name
        return str(round_paths(self.output_dir, round_index - 1).model)

    # ---- phases ---------------------------------------------------------------------

    def _generate(self, round_index: int, paths: RoundPaths, judge: JudgeSpec) -> None:
        prompts = self._training_prompts()
        settings = GenerationSpec(
            max_new_tokens=self.spec.max_new_tokens,
            do_sample=True,
            temperature=self.spec.temperature,
            top_p=self.spec.top_p,
            batch_size=self.spec.generation_batch_size,
            max_prompt_length=self.spec.training.max_length,
        )
        # Every round draws fresh samples: the seed moves with the round.
        seed = self.spec.seed + round_index
        rows = ray.get(generate_task.remote(
            self._policy_before(round_index), prompts, settings.model_dump(mode="json"),
            self.spec.samples_per_prompt, seed,
        ))
        write_jsonl(paths.completions, rows)

    def _score(self, round_index: int, paths: RoundPaths, judge: JudgeSpec) -> None:
        rows = read_jsonl(paths.completions)
        with ScorerPool(judge, self.spec.scorer) as pool:
            rewards = pool.score([row["prompt"] for row in rows], [row["text"] for row in rows])
        write_jsonl(paths.scored, [{**row, "reward": reward}
                                   for row, reward in zip(rows, rewards, strict=True)])

    def _pairs(self, round_index: int, paths: RoundPaths, judge: JudgeSpec) -> None:
        scored = read_jsonl(paths.scored)
        pairs, stats = best_worst_pairs(scored, self.spec.min_reward_gap)
        prompts = {row["prompt_index"] for row in scored}
        write_json(paths.root / "pair_stats.json",
                   {**stats, "prompts": len(prompts), "pairs_kept": len(pairs)})

        # Train on D0 plus every pair generated so far ("original+generated"), or on the
        # generated pairs alone.
        rows: list[dict[str, Any]] = []
        if self.spec.mix == "original+generated":
            rows += [{"prompt": [dict(m) for m in r.prompt], "chosen": r.chosen,
                      "rejected": r.rejected}
                     for r in read_preference_sets([self.spec.dataset]).records]
        for earlier in range(1, round_index):
            rows += _as_training_rows(read_jsonl(round_paths(self.output_dir, earlier).pairs))
        rows += _as_training_rows(pairs)
        if not rows:
            raise RuntimeError(
                f"round {round_index}: no pair kept (min_reward_gap {self.spec.min_reward_gap}) "
                "and mix is 'generated', so there is nothing to train on; lower "
                "min_reward_gap or use mix 'original+generated'"
            )
        write_jsonl(paths.train_data, rows)
        write_jsonl(paths.pairs, pairs)

    def _train(self, round_index: int, paths: RoundPaths, judge: JudgeSpec) -> None:
        if round_index == 0:
            dataset = self.spec.dataset
        else:
            dataset = DatasetSpec(path=str(paths.train_data), format="pairs")
        model = self.spec.model.model_copy(update={"name": self._policy_before(round_index)})
        train_spec = TrainJobSpec(
            model=model, dataset=dataset, loss=self.spec.loss, training=self.spec.training,
            seed=self.spec.seed + round_index, scaling=self.spec.scaling,
            max_failures=self.spec.max_failures,
        )
        with self.observer.training(round_index, paths.train, train_spec.training.max_steps):
            fit_train_job(train_spec, paths.train, run_name=f"round-{round_index:02d}",
                          resume=True)

    def _evaluate(self, round_index: int, paths: RoundPaths, judge: JudgeSpec) -> None:
        evaluation = self.spec.evaluation
        spec = EvaluateJobSpec(
            model=ModelSpec(name=str(paths.model)),
            eval_set=self.spec.eval_set,
            reference=EvalSetReference(),
            judge=judge,
            generation=evaluation.generation,
            tie_epsilon=evaluation.tie_epsilon,
            bootstrap=evaluation.bootstrap,
            seed=self.spec.seed,
        )
        ray.get(evaluate_task.remote(spec.model_dump(mode="json"), str(paths.evaluation)))

    # ---- reporting ------------------------------------------------------------------

    def _report_round(self, round_index: int, paths: RoundPaths) -> dict[str, Any]:
        results = json.loads((paths.evaluation / "results.json").read_text())
        summary = results["candidates"][0]
        fields: dict[str, Any] = {"phase": "done", "checkpoint": str(paths.model),
                                  "win_rate": summary["win_rate"]}
        stats_file = paths.root / "pair_stats.json"
        if stats_file.exists():
            stats = json.loads(stats_file.read_text())
            fields.update(pairs_generated=int(stats["prompts"]),
                          pairs_kept=int(stats["pairs_kept"]), reward_stats=stats)
        self.observer.iteration(round_index, fields)
        self.observer.evaluation(round_index, summary, candidate=f"round-{round_index}")
        return {"round": round_index, **summary}


def _as_training_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
            for p in pairs]


def _reward_max_length(spec: RewardModelJobSpec) -> int:
    return spec.training.max_length
