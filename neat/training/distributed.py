"""Multi-process training under torchrun: the process group, model wrapping, rank agreement.

neat adds no launcher: `torchrun --nproc_per_node N -m neat train -c ...` starts N copies of
one command, and the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) are the only
signal. Without them nothing here starts a process group, so a plain `neat train` stays the
single-process run it always was, and the same config runs in both.

The model code knows nothing of this (torchtitan's rule): DDP wraps it, FSDP2 shards it in
place, and the loop calls the few agreement helpers below at its own intervals.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import structlog
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from neat.errors import CheckpointError, ConfigError
from neat.monitoring.logs import configure_rank_logging
from neat.training.device import resolve_device

__all__ = [
    "SINGLE",
    "DistInfo",
    "FsdpPolicy",
    "agree_on_stop",
    "barrier",
    "broadcast_object",
    "check_batch_divides",
    "fsdp_policy",
    "init_distributed",
    "mean_across_ranks",
    "per_rank_state",
    "rank_entries",
    "rank_zero_first",
    "resolve_mode",
    "set_grad_sync",
    "state_for_this_rank",
    "torchrun_env",
    "unwrap_model",
    "wrap_model",
]

log = structlog.get_logger(__name__)

Mode = Literal["none", "ddp", "fsdp"]
T = TypeVar("T")

# Barriers on the CPU side group wait while rank 0 tokenizes a corpus or writes a checkpoint,
# which can take far longer than NCCL's watchdog allows; gloo has no watchdog.
_CPU_GROUP_TIMEOUT = timedelta(hours=6)
_CPU = torch.device("cpu")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, its device, and how the model is wrapped.

    `mode` "none" means no process group (a plain single-process run).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    mode: Mode = "none"
    device: torch.device = _CPU
    cpu_group: Any = None  # a gloo ProcessGroup for small host-side agreements

    @property
    def active(self) -> bool:
        return self.mode != "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun, else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ConfigError(
            f"invalid torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}"
        ) from None
    return rank, world, local


def resolve_mode(setting: str, env: tuple[int, int, int] | None) -> Mode:
    """`training.distributed` for this launch. Outside torchrun every setting means one
    process; under it `auto` is DDP when there is more than one process."""
    if env is None:
        return "none"
    world = env[1]
    if setting == "auto":
        return "ddp" if world > 1 else "none"
    if setting == "none":
        if world > 1:
            raise ConfigError(
                f"training.distributed is 'none' but torchrun started {world} processes, which "
                "would all train alone and write the same run directory; set it to auto, ddp "
                "or fsdp, or run `neat train` without torchrun"
            )
        return "none"
    if setting not in ("ddp", "fsdp"):
        raise ConfigError(
            f"training.distributed: unknown mode {setting!r}; use auto, ddp, fsdp or none"
        )
    return "ddp" if setting == "ddp" else "fsdp"


def init_distributed(setting: str, device_spec: str) -> DistInfo:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPUs), or return a one-process
    DistInfo when there is none to join. Idempotent: a group started earlier is reused."""
    env = torchrun_env()
    mode = resolve_mode(setting, env)
    device = resolve_device(device_spec)
    if mode == "none" or env is None:
        return DistInfo(device=device)
    rank, world, local = env
    device = _rank_device(device, device_spec, local)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
        atexit.register(_destroy)
    cpu_group = dist.new_group(backend="gloo", timeout=_CPU_GROUP_TIMEOUT)
    configure_rank_logging(rank)
    log.info("distributed_started", mode=mode, world_size=world, device=str(device))
    return DistInfo(rank, world, local, mode, device, cpu_group)


def _rank_device(device: torch.device, spec: str, local_rank: int) -> torch.device:
    """One GPU per process, chosen by LOCAL_RANK; CPU processes share the CPU."""
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(
            f"training.device={spec!r}: multi-process training runs on CUDA (NCCL) or on CPU "
            "(gloo); set training.device to cuda or cpu"
        )
    if ":" in spec:
        raise ConfigError(
            f"training.device={spec!r} names one GPU, but under torchrun each process takes "
            "the GPU of its LOCAL_RANK; set training.device to auto or cuda"
        )
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK {local_rank} has no GPU: this machine has "
            f"{torch.cuda.device_count()}; lower torchrun's --nproc_per_node"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# -- the model -------------------------------------------------------------------------------------


_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


@dataclass(frozen=True)
class FsdpPolicy:
    """What FSDP2 is given: the dtypes of gathered parameters and of gradient reductions
    (None: the parameters' own) and whether a block frees its gathered parameters after
    forward."""

    param_dtype: torch.dtype | None = None
    reduce_dtype: torch.dtype | None = None
    reshard_after_forward: bool = True


def fsdp_policy(
    param_dtype: str | None,
    reduce_dtype: str | None,
    reshard_after_forward: bool,
    precision: str,
) -> FsdpPolicy:
    """training.fsdp with its nulls filled in from the (resolved) training precision:
    bf16 training gathers bf16 parameters and reduces in fp32, torchtitan's default, so
    communication halves while gradient sums keep fp32's range; fp32 training casts nothing."""
    if param_dtype is None:
        param_dtype = "bf16" if precision == "bf16" else "fp32"
    if reduce_dtype is None:
        reduce_dtype = "fp32"
    for key, value in (("param_dtype", param_dtype), ("reduce_dtype", reduce_dtype)):
        if value not in _DTYPES:
            raise ConfigError(
                f"training.fsdp.{key}: unknown dtype {value!r}; use bf16, fp32, fp16 or null"
            )
    return FsdpPolicy(_DTYPES[param_dtype], _DTYPES[reduce_dtype], reshard_after_forward)


def wrap_model(model: nn.Module, info: DistInfo, fsdp: FsdpPolicy | None = None) -> nn.Module:
    """The module the training step calls. DDP wraps `model`; FSDP2 shards it in place, each
    block of every top-level ModuleList (the transformer blocks) first, then the rest at the
    root, so one block's parameters are gathered at a time, all under `fsdp` (default: no
    casts, reshard after forward). Without a group: `model` itself."""
    if info.mode == "ddp":
        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if info.mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = fsdp or FsdpPolicy()
        options: dict[str, Any] = {
            "mp_policy": MixedPrecisionPolicy(
                param_dtype=policy.param_dtype, reduce_dtype=policy.reduce_dtype
            ),
            "reshard_after_forward": policy.reshard_after_forward,
        }
        for child in model.children():
            if isinstance(child, nn.ModuleList):
                for block in child:
                    fully_shard(block, **options)
        fully_shard(model, **options)
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 shards in place: nothing to unwrap)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def set_grad_sync(model: nn.Module, enabled: bool) -> None:
    """Skip DDP's gradient all-reduce on all but the last micro-step of an accumulation.

    FSDP2 keeps reducing every micro-step: skipping would hold unsharded gradients.
    """
    if isinstance(model, DistributedDataParallel):
        model.require_backward_grad_sync = enabled


def check_batch_divides(batch_size: int, info: DistInfo) -> None:
    if batch_size % info.world_size:
        raise ConfigError(
            f"training.batch_size={batch_size} is the global batch and must split evenly over "
            f"the {info.world_size} processes torchrun started; use a multiple of "
            f"{info.world_size}"
        )


# -- agreement between ranks (each a collective: every rank calls it, in the same order) -----------


def broadcast_object(obj: T, info: DistInfo) -> T:
    """Rank 0's `obj` on every rank (e.g. the run directory each rank resolved on its own)."""
    if not info.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=info.cpu_group)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier(group=info.cpu_group)


@contextlib.contextmanager
def rank_zero_first(info: DistInfo) -> Iterator[None]:
    """Each machine's local rank 0 runs the block (a tokenizer fit, the token cache) before
    the other ranks, which then find its result in the cache instead of all building it."""
    if info.local_rank != 0:
        barrier(info)
    yield
    if info.local_rank == 0:
        barrier(info)


def mean_across_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a scalar over ranks (gloo has no AVG, so SUM / world size)."""
    if not info.active:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / info.world_size


def agree_on_stop(signum: int | None, info: DistInfo) -> int | None:
    """A stop signal that reached any rank stops every rank after the same step.

    torchrun forwards SIGTERM/SIGINT to each worker, but they arrive during different steps;
    stopping on each rank's own view would leave one rank in a collective the others skip.
    A one-integer all-reduce on the CPU group per step costs microseconds and no GPU sync.
    """
    if not info.active:
        return signum
    flag = torch.tensor([signum or 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=info.cpu_group)
    agreed = int(flag.item())
    return agreed or None


# -- per-rank state in checkpoints -----------------------------------------------------------------


def per_rank_state(local: dict[str, Any], info: DistInfo) -> dict[str, Any]:
    """Every rank's `local` state, gathered for rank 0 to save: `{"world_size", "ranks"}`.
    A single process keeps its plain state (the layout checkpoints always had)."""
    if not info.active:
        return local
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, local, group=info.cpu_group)
    return {"world_size": info.world_size, "ranks": gathered}


def rank_entries(saved: dict[str, Any], what: str) -> list[dict[str, Any]]:
    """The per-rank states of a checkpoint; a single-process state is a list of one."""
    if "ranks" not in saved or "world_size" not in saved:
        return [saved]
    ranks = saved["ranks"]
    if not isinstance(ranks, list) or not all(isinstance(r, dict) for r in ranks) or not ranks:
        raise CheckpointError(
            f"the checkpoint's {what} has a malformed 'ranks' list; resume from a checkpoint "
            "written by neat's trainer"
        )
    return ranks


def state_for_this_rank(saved: dict[str, Any], info: DistInfo, what: str) -> dict[str, Any]:
    """This rank's data position. On the world size it was saved with: its own entry. On
    another: the shared position when all ranks stood at the same one (neat's sampler always
    does, its position counts global batches), else an error naming both world sizes."""
    entries = rank_entries(saved, what)
    if len(entries) == info.world_size:
        return entries[info.rank]
    if all(entry == entries[0] for entry in entries):
        return entries[0]
    raise CheckpointError(
        f"the checkpoint holds different {what} for each of its {len(entries)} processes, "
        f"which cannot be split over {info.world_size}; resume with torchrun "
        f"--nproc_per_node {len(entries)}"
    )
