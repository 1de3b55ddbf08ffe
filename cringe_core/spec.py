"""The job spec: one typed schema shared by `cringe train` and the REST API.

Every default is written once here; `resolve` fills them in so that a job records the
exact settings it ran with. Losses are a tagged union on `name`, so a field that belongs
to another loss is rejected instead of silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_POLICY = "smollm2-135m-instruct"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- losses -------------------------------------------------------------------------


class PairwiseCringeSpec(StrictModel):
    """Pairwise Cringe Loss (Xu et al. 2023, arXiv:2312.16682)."""

    name: Literal["pairwise_cringe"] = "pairwise_cringe"
    margin_bias: float = Field(
        -10.0, description="Gate bias b: pairs separated by more get g -> 0."
    )
    temperature: float = Field(10.0, gt=0, description="Gate temperature tau (> 0).")
    alpha: float = Field(1.0, ge=0, description="Weight of the cringe term.")
    top_k: int = Field(5, ge=1, le=1000, description="Candidates sampled from for the cringe term.")
    margin: Literal["sum", "mean"] = Field(
        "sum", description="Margin from summed log-probs, or divided by each side's tokens."
    )
    detach_gate: bool = Field(False, description="Treat the gate as a constant weight.")


class BinaryCringeSpec(StrictModel):
    """Binary Cringe Loss (Adolphs et al. 2022, arXiv:2211.05826)."""

    name: Literal["binary_cringe"] = "binary_cringe"
    alpha: float = Field(1.0, ge=0, description="Weight of the cringe term on bad tokens.")
    top_k: int = Field(5, ge=1, le=1000, description="Candidates sampled from at each bad token.")
    detach_positive: bool = Field(
        False, description="Stop the gradient into the sampled (positive) logit."
    )


class DpoSpec(StrictModel):
    """Direct Preference Optimization (Rafailov et al. 2023, arXiv:2305.18290)."""

    name: Literal["dpo"] = "dpo"
    beta: float = Field(
        0.1, gt=0, le=100, description="Inverse temperature of the implicit reward."
    )
    reference: Literal["precomputed", "live"] = Field(
        "precomputed",
        description="Reference log-probs computed once before training, or each step.",
    )


class IpoSpec(StrictModel):
    """IPO (Azar et al. 2023, arXiv:2310.12036), with length-normalized log-ratios."""

    name: Literal["ipo"] = "ipo"
    beta: float = Field(0.1, gt=0, le=100, description="Regularization strength.")
    reference: Literal["precomputed", "live"] = Field(
        "precomputed",
        description="Reference log-probs computed once before training, or each step.",
    )


class SftSpec(StrictModel):
    """Token cross-entropy on the chosen completion."""

    name: Literal["sft"] = "sft"


LossSpec = Annotated[
    PairwiseCringeSpec | BinaryCringeSpec | DpoSpec | IpoSpec | SftSpec,
    Field(discriminator="name"),
]


# ---- data, model, training ----------------------------------------------------------

DataFormat = Literal["auto", "pairs", "hh", "alpaca", "sharegpt", "binary"]


class DatasetSpec(StrictModel):
    path: str = Field(
        ...,
        min_length=1,
        description="A JSON, JSONL or gzip file, or a Hugging Face hub data set name.",
    )
    format: DataFormat = Field("auto", description="Record layout; 'auto' detects it.")
    split: str = Field("train", description="Split to read when `path` is a hub data set.")
    max_rows: int | None = Field(None, ge=1, description="Read at most this many rows.")
    max_invalid_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of defective rows that may be dropped instead of failing the job.",
    )


class LoraSpec(StrictModel):
    r: int = Field(16, ge=1, le=1024, description="Rank of the adapters.")
    alpha: float = Field(32.0, gt=0, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class ModelSpec(StrictModel):
    name: str = Field(
        DEFAULT_POLICY,
        min_length=1,
        description="A Hugging Face model id, a local folder, or the alias smollm2-135m-instruct.",
    )
    revision: str | None = Field(None, description="Hub revision; ignored for local folders.")
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters instead of all weights.")


class TrainingSpec(StrictModel):
    max_steps: int = Field(100, ge=1, le=10_000_000, description="Optimizer steps.")
    batch_size: int = Field(
        8, ge=1, le=65_536, description="Examples (pairs) per optimizer step, over all workers."
    )
    micro_batch_size: int = Field(
        2, ge=1, le=65_536, description="Examples per forward pass; the rest is accumulated."
    )
    learning_rate: float = Field(5e-6, gt=0, le=1.0)
    weight_decay: float = Field(0.0, ge=0, le=10.0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps, then linear decay to 0.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip gradients to this norm.")
    max_length: int = Field(1024, ge=8, le=131_072, description="Tokens per prompt + completion.")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="'auto' uses bfloat16 autocast where the device supports it."
    )
    checkpoint_every_steps: int = Field(
        0, ge=0, description="Save a resumable checkpoint this often; 0 saves only at the end."
    )
    log_every_steps: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _micro_batch_divides_batch(self) -> TrainingSpec:
        if self.batch_size % self.micro_batch_size != 0:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} must divide batch_size "
                f"{self.batch_size}; pick a divisor of batch_size"
            )
        return self


# ---- distributed execution ----------------------------------------------------------


class ScalingSpec(StrictModel):
    """How many data-parallel workers a job trains on when it runs on Ray."""

    num_workers: int = Field(
        1, ge=1, le=4096, description="Data-parallel training workers (one process each)."
    )
    use_gpu: bool = Field(
        False, description="One GPU per worker with the NCCL backend; false trains on CPU (gloo)."
    )


class TrainJobSpec(StrictModel):
    kind: Literal["train"] = "train"
    model: ModelSpec = ModelSpec()
    dataset: DatasetSpec
    loss: LossSpec = PairwiseCringeSpec()
    training: TrainingSpec = TrainingSpec()
    seed: int = Field(0, ge=0, le=2**32 - 1)
    scaling: ScalingSpec = ScalingSpec()
    max_failures: int = Field(
        0, ge=0, le=1000, description="Worker failures Ray Train recovers from a checkpoint."
    )


# ---- reward models ------------------------------------------------------------------

DEFAULT_REWARD_BACKBONE = "minilm-l6-v2"


class RewardBackboneSpec(ModelSpec):
    name: str = Field(
        DEFAULT_REWARD_BACKBONE,
        min_length=1,
        description=(
            "A sequence-classification checkpoint (local folder or Hugging Face id), or the "
            "alias minilm-l6-v2; a checkpoint without a one-output head gets a new one."
        ),
    )


class RewardTrainingSpec(TrainingSpec):
    """Training settings, with defaults sized for a small encoder reward model."""

    max_steps: int = Field(200, ge=1, le=10_000_000, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, le=65_536, description="Pairs per optimizer step.")
    micro_batch_size: int = Field(
        16, ge=1, le=65_536, description="Pairs per forward pass; the rest is accumulated."
    )
    learning_rate: float = Field(3e-5, gt=0, le=1.0)
    warmup_steps: int = Field(10, ge=0, description="Linear warm-up steps, then linear decay to 0.")
    max_length: int = Field(
        256,
        ge=8,
        le=131_072,
        description=(
            "Tokens per scored (prompt, completion). Without a chat template the longer of "
            "the two is cut first. With one the completion is cut, and a prompt longer than "
            "half of max_length keeps its last half."
        ),
    )


class RewardModelJobSpec(StrictModel):
    """Train a reward model with the Bradley-Terry loss on preference pairs."""

    kind: Literal["reward_model"] = "reward_model"
    model: RewardBackboneSpec = RewardBackboneSpec()
    dataset: list[DatasetSpec] = Field(
        ...,
        min_length=1,
        description="One data set, or a list of them whose pairs are pooled.",
    )
    training: RewardTrainingSpec = RewardTrainingSpec()
    eval_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description=(
            "Share of distinct prompts held out for accuracy and mean margin; every pair of "
            "a held-out prompt is held out. 0 trains on all pairs and reports no held-out metrics."
        ),
    )
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("dataset", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


# ---- evaluation ---------------------------------------------------------------------


class GenerationSpec(StrictModel):
    """Completion generation settings: greedy decoding by default, or sampling."""

    max_new_tokens: int = Field(256, ge=1, le=32_768, description="Generated tokens at most.")
    do_sample: bool = Field(False, description="Sample tokens instead of taking the most likely.")
    temperature: float = Field(1.0, gt=0, le=100, description="Softmax temperature when sampling.")
    top_p: float = Field(
        1.0, gt=0, le=1.0, description="Sample from the smallest token set with this probability."
    )
    batch_size: int = Field(8, ge=1, le=4096, description="Prompts generated for together.")
    max_prompt_length: int = Field(
        1024, ge=8, le=131_072, description="Prompt tokens kept; a longer prompt keeps its end."
    )

    @model_validator(mode="after")
    def _sampling_settings_need_sampling(self) -> GenerationSpec:
        if not self.do_sample and (self.temperature != 1.0 or self.top_p != 1.0):
            raise ValueError(
                f"temperature {self.temperature} and top_p {self.top_p} only apply when "
                "do_sample is true; set do_sample: true, or remove them for greedy decoding"
            )
        return self


class EvalSetSpec(StrictModel):
    path: str = Field(
        ...,
        min_length=1,
        description=(
            "Prompts to evaluate: AlpacaFarm rows (instruction, input, output as the reference) "
            "or prompt rows (prompt, optional reference); JSON, JSONL or gzip."
        ),
    )
    max_prompts: int | None = Field(
        None, ge=1, description="Evaluate the first this many prompts (after heldout_from)."
    )
    heldout_from: str | None = Field(
        None,
        min_length=1,
        description=(
            "Folder of a reward_model run: keep only the prompts its held-out split kept out "
            "of training, so the judge has not seen them."
        ),
    )


class JudgeSpec(StrictModel):
    name: str = Field(
        ...,
        min_length=1,
        description=(
            "The reward model that judges: the model/ folder of a reward_model run, or any "
            "sequence-classification checkpoint with one output."
        ),
    )
    revision: str | None = Field(None, description="Hub revision; ignored for local folders.")
    max_length: int = Field(
        512, ge=8, le=131_072, description="Tokens per scored (prompt, completion)."
    )
    batch_size: int = Field(16, ge=1, le=4096, description="Completions scored per forward pass.")


class EvalSetReference(StrictModel):
    """References taken from the evaluation set's reference answers."""

    source: Literal["eval_set"] = "eval_set"


class PolicyReference(StrictModel):
    """References generated by a policy checkpoint, such as the starting policy."""

    source: Literal["policy"] = "policy"
    model: ModelSpec = ModelSpec()


ReferenceSpec = Annotated[EvalSetReference | PolicyReference, Field(discriminator="source")]


class BootstrapSpec(StrictModel):
    resamples: int = Field(1000, ge=10, le=1_000_000, description="Resamples of the prompts.")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="Coverage of the interval.")


class EvaluateJobSpec(StrictModel):
    """Judge a policy's completions against references with a reward model."""

    kind: Literal["evaluate"] = "evaluate"
    model: ModelSpec = ModelSpec()
    compare_with: ModelSpec | None = Field(
        None,
        description=(
            "A second candidate judged on the same prompts and references; the result adds "
            "the paired difference of the two win rates with its interval."
        ),
    )
    eval_set: EvalSetSpec
    reference: ReferenceSpec = EvalSetReference()
    judge: JudgeSpec
    generation: GenerationSpec = GenerationSpec()
    preference_data: DatasetSpec | None = Field(
        None, description="Held-out preference pairs for the policy's preference accuracy."
    )
    preference_max_length: int = Field(
        1024, ge=8, le=131_072, description="Tokens per prompt + completion of preference_data."
    )
    tie_epsilon: float = Field(
        0.0, ge=0.0, description="A reward difference within this distance of 0 is a tie."
    )
    bootstrap: BootstrapSpec = BootstrapSpec()
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="'auto' uses bfloat16 autocast where the device supports it."
    )
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _no_adapters(self) -> EvaluateJobSpec:
        models = {"model": self.model, "compare_with": self.compare_with}
        if isinstance(self.reference, PolicyReference):
            models["reference/model"] = self.reference.model
        with_lora = [name for name, model in models.items() if model and model.lora]
        if with_lora:
            raise ValueError(
                f"{', '.join(with_lora)}: lora is a training setting and new adapters would "
                "not change the model; remove it and name the model folder a train job saved"
            )
        return self


# ---- iterative training -------------------------------------------------------------


class ScorerSpec(StrictModel):
    """The pool of Ray actors that score (prompt, completion) with the reward model."""

    num_replicas: int = Field(1, ge=1, le=1024, description="Scorer actors, each with a model.")
    batch_size: int = Field(16, ge=1, le=4096, description="Completions scored per forward pass.")
    max_length: int = Field(
        512, ge=8, le=131_072, description="Tokens per scored (prompt, completion)."
    )


class IterateEvaluationSpec(StrictModel):
    """How each round's policy is judged against the evaluation set's references."""

    generation: GenerationSpec = GenerationSpec(max_new_tokens=128)
    tie_epsilon: float = Field(
        0.0, ge=0.0, description="A reward difference within this distance of 0 is a tie."
    )
    bootstrap: BootstrapSpec = BootstrapSpec()


class IterateJobSpec(StrictModel):
    """Iterative preference optimization: train, sample, score, pair, train again."""

    kind: Literal["iterate"] = "iterate"
    model: ModelSpec = ModelSpec()
    dataset: DatasetSpec = Field(
        ..., description="The starting preference pairs D0; their prompts are sampled each round."
    )
    loss: LossSpec = PairwiseCringeSpec()
    training: TrainingSpec = TrainingSpec()
    rounds: int = Field(2, ge=0, le=100, description="Rounds after round 0 (which trains on D0).")
    samples_per_prompt: int = Field(4, ge=2, le=256, description="Completions per prompt.")
    max_prompts: int | None = Field(
        None, ge=1, description="Sample for at most this many training prompts per round."
    )
    temperature: float = Field(1.0, gt=0, le=100, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1.0, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(256, ge=1, le=32_768, description="Sampled tokens at most.")
    generation_batch_size: int = Field(8, ge=1, le=4096, description="Prompts sampled together.")
    min_reward_gap: float = Field(
        0.0, ge=0.0, description="Keep (best, worst) only when their rewards differ by this much."
    )
    mix: Literal["original+generated", "generated"] = Field(
        "original+generated",
        description="Train each round on D0 plus every pair generated so far, or on those pairs.",
    )
    init: Literal["previous", "initial"] = Field(
        "previous", description="Start each round from the previous round's policy, or model."
    )
    reward_model: JudgeSpec | RewardModelJobSpec = Field(
        ...,
        description=(
            "The scorer and judge: a trained reward model (a name, or a judge mapping), or a "
            "reward_model spec that the job trains first."
        ),
    )
    eval_set: EvalSetSpec
    evaluation: IterateEvaluationSpec = IterateEvaluationSpec()
    scaling: ScalingSpec = ScalingSpec()
    scorer: ScorerSpec = ScorerSpec()
    max_failures: int = Field(
        0, ge=0, le=1000, description="Worker failures Ray Train recovers from a checkpoint."
    )
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("reward_model", mode="before")
    @classmethod
    def _name_is_a_judge(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


JobSpec = Annotated[
    TrainJobSpec | RewardModelJobSpec | EvaluateJobSpec | IterateJobSpec,
    Field(discriminator="kind"),
]
_job_spec_adapter: TypeAdapter[Any] = TypeAdapter(JobSpec)
# The same union without the pydantic annotation, for type hints.
AnyJobSpec = TrainJobSpec | RewardModelJobSpec | EvaluateJobSpec | IterateJobSpec
JOB_KINDS: tuple[str, ...] = tuple(
    member.model_fields["kind"].default
    for member in (TrainJobSpec, RewardModelJobSpec, EvaluateJobSpec, IterateJobSpec)
)
_UNION_TAGS = {"train", "reward_model", "evaluate", "iterate", "eval_set", "policy"} | {
    member.model_fields["name"].default
    for member in (PairwiseCringeSpec, BinaryCringeSpec, DpoSpec, IpoSpec, SftSpec)
}


# ---- parsing and errors -------------------------------------------------------------


class SpecError(ValueError):
    """A spec with one or more invalid fields; `problems` lists every one of them."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        lines = [f"  {p['param']}: {p['message']}" for p in problems]
        super().__init__(f"invalid job spec ({len(problems)} problem(s)):\n" + "\n".join(lines))


def _json_pointer(location: tuple[int | str, ...]) -> str:
    # Union members show up in the location as their tag: every location starts with the
    # job kind ("train"), and a loss adds its name ("pairwise_cringe") after the field.
    # Drop them so the path is the one a user wrote.
    fields = location[1:]
    parts = [str(p) for i, p in enumerate(fields) if not (i > 0 and p in _UNION_TAGS)]
    return "/" + "/".join(parts)


def describe_validation_error(error: ValidationError) -> list[dict[str, Any]]:
    """Turn pydantic errors into problems that name the field, the bad value and the fix."""
    problems = []
    for item in error.errors(include_url=False):
        param = _json_pointer(item["loc"])
        value = item.get("input")
        kind = item["type"]
        message = item["msg"]
        if kind == "extra_forbidden":
            message = (
                f"unknown field {param.rsplit('/', 1)[-1]!r}; remove it "
                "(a field of another loss or kind is rejected, not ignored)"
            )
        elif kind == "missing":
            message = "missing required field; add it"
        elif kind == "union_tag_invalid":
            context = item.get("ctx", {})
            tag_field = context.get("discriminator", "").strip("'")
            param = f"{param.rstrip('/')}/{tag_field}" if tag_field else param
            message = (
                f"unknown value {context.get('tag')!r}; "
                f"expected one of {context.get('expected_tags', '')}"
            )
        elif kind == "value_error":
            # A validator's own message already names the values; the input here can be
            # the whole spec, too long to repeat.
            message = message.removeprefix("Value error, ")
        else:
            message = f"{message} (got {value!r})"
        problems.append({"param": param, "message": message, "type": kind})
    return problems


def parse_spec(data: Any) -> AnyJobSpec:
    """Validate a spec given as a mapping, raising SpecError with every problem at once."""
    if not isinstance(data, dict):
        raise SpecError(
            [
                {
                    "param": "/",
                    "message": f"a spec is a mapping, got {type(data).__name__}",
                    "type": "type_error",
                }
            ]
        )
    data = {"kind": "train", **data}
    try:
        return _job_spec_adapter.validate_python(data)
    except ValidationError as error:
        raise SpecError(describe_validation_error(error)) from None


def load_spec_file(path: str | Path) -> AnyJobSpec:
    """Read a YAML (or JSON) spec file and validate it."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(
            [{"param": "/", "message": f"{path} is not valid YAML: {error}", "type": "yaml"}]
        ) from None
    return parse_spec(data)


def resolve(spec: AnyJobSpec) -> dict[str, Any]:
    """Return the spec with every default filled in, as plain JSON-compatible data."""
    return spec.model_dump(mode="json")


def json_schema() -> dict[str, Any]:
    return _job_spec_adapter.json_schema()
