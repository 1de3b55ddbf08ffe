"""Data-parallel training of a `train` spec on Ray Train's TorchTrainer.

Every worker runs the single-process `Trainer` as one DDP rank. The global batch is
split evenly across ranks, and the loss is divided by token counts summed over all
ranks (`Parallelism.all_reduce`), so 1 worker and N workers take the same step.

Rank 0 writes checkpoints under the run folder and hands each one to Ray Train with
`ray.train.report`; Ray Train copies it to `<storage_path>/<run_name>/`. When a worker
dies, `FailureConfig(max_failures)` makes Ray Train replace the worker group, and the
new group resumes from the newest checkpoint Ray Train recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from cringe_core.process_env import training_env
from cringe_core.spec import TrainJobSpec, parse_spec
from cringe_core.training.trainer import Parallelism, Trainer
from workers.logs import stamped
from workers.progress_tail import record_worker_group_start

PARALLEL_CHECK_FILE = "parallel_check.json"
# Threads each CPU worker gives torch; several workers on one machine would otherwise
# each start one thread per core and slow each other down.
THREADS_ENV = "CRINGE_TORCH_THREADS"


def _sum_over_ranks(device: torch.device) -> Any:
    """Return an all-reduce that sums a tensor over ranks and leaves its input unchanged."""

    def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
        # NCCL only reduces tensors on the GPU, and metrics arrive as CPU tensors.
        summed = tensor.detach().to(device).clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed.to(tensor.device)

    return all_reduce


def _wrap_in_ddp(device: torch.device) -> Any:
    def wrap(model: Any) -> Any:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    return wrap


def parameter_digest(model: Any) -> str:
    """Return a SHA-256 over every parameter's bytes, in name order."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _report_to_ray_train(world_rank: int) -> Any:
    """Return the trainer's checkpoint hook: every rank reports, rank 0 with the folder."""
    import ray.train

    def on_checkpoint(step: int, saved: Path | None, metrics: dict[str, float]) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(saved)) if saved else None
        reported = {"step": step, **{k: v for k, v in metrics.items() if v == v}}
        ray.train.report(reported, checkpoint=checkpoint, checkpoint_dir_name=f"step-{step:08d}")

    return on_checkpoint


def _check_ranks_agree(model: Any, world_size: int, output_dir: Path, rank: int) -> None:
    """Compare every rank's parameters after training; DDP must keep them identical."""
    digests: list[Any] = [None] * world_size
    dist.all_gather_object(digests, parameter_digest(model))
    if rank != 0:
        return
    (output_dir / PARALLEL_CHECK_FILE).write_text(
        json.dumps({"world_size": world_size, "parameter_digests": digests}), encoding="utf-8"
    )
    if len(set(digests)) != 1:
        raise RuntimeError(
            f"ranks finished training with different parameters (digests {digests}); "
            "data-parallel gradients were not synchronized, so the saved model is not valid"
        )


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs: one DDP rank of `Trainer`."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    log = stamped(__name__, rank)
    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))

    spec = parse_spec(config["spec"])
    if not isinstance(spec, TrainJobSpec):
        raise TypeError(f"train_loop_per_worker runs train specs, got kind {spec.kind!r}")
    output_dir = Path(config["output_dir"])
    device = ray.train.torch.get_device()
    checkpoint = ray.train.get_checkpoint()

    with contextlib.ExitStack() as stack:
        resume_from = None
        if checkpoint is not None:
            resume_from = Path(stack.enter_context(checkpoint.as_directory()))
            log.info("resuming from the Ray Train checkpoint %s", resume_from)
        if rank == 0:
            record_worker_group_start(output_dir, _checkpoint_step(checkpoint))
        parallelism = Parallelism(
            rank=rank,
            world_size=world_size,
            all_reduce=_sum_over_ranks(device) if world_size > 1 else None,
            wrap_model=_wrap_in_ddp(device) if world_size > 1 else None,
            on_checkpoint=_report_to_ray_train(rank),
            resume_from=resume_from,
        )
        trainer = Trainer(spec, output_dir, device=device, parallelism=parallelism,
                          show_progress=False)
        resume = bool(config.get("resume")) or resume_from is not None
        result = trainer.run(resume=resume)
        log.info("finished %d steps", result.steps)

    if world_size > 1:
        _check_ranks_agree(trainer.model, world_size, output_dir, rank)


def _checkpoint_step(checkpoint: Any) -> int | None:
    """The step of a Ray Train checkpoint, from its folder name `step-N`; None if none."""
    if checkpoint is None:
        return None
    name = Path(checkpoint.path).name
    return int(name.removeprefix("step-")) if name.startswith("step-") else None


def fit_train_job(
    spec: TrainJobSpec,
    output_dir: Path,
    *,
    run_name: str = "train",
    resume: bool = False,
    storage_path: Path | None = None,
) -> Any:
    """Train `spec` on `spec.scaling.num_workers` Ray workers; return Ray Train's Result.

    Needs a connected Ray cluster (`ray.init`). Ray Train stores its run state and
    checkpoint copies under `storage_path/run_name` (default `output_dir/ray_train`),
    so fitting again with the same name continues from that run's last checkpoint.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    output_dir = Path(output_dir).resolve()
    storage = Path(storage_path or output_dir / "ray_train").resolve()
    scaling = spec.scaling
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "spec": spec.model_dump(mode="json"),
            "output_dir": str(output_dir),
            "resume": resume,
        },
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=spec.max_failures),
            # Two copies are enough to resume; older ones only fill the disk.
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env={"env_vars": _worker_env()},  # type: ignore[call-arg]
        ),
    )
    return trainer.fit()


def _worker_env() -> dict[str, str]:
    """Environment variables the training workers inherit from this process."""
    names = ("CRINGE_JOB_ID", "CRINGE_ATTEMPT", "CRINGE_CACHE_DIR", THREADS_ENV, "HF_HOME")
    inherited = {name: os.environ[name] for name in names if name in os.environ}
    return {**training_env(trains_in_thread=True), **inherited}
