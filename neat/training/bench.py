"""`neat bench`: steady-state speed of the trainer's own step on a config's model.

The step measured is `Trainer`'s (autocast, loss scaling, clipping, fused AdamW, compile), so
the figures are what `neat train` gets between evaluations. Warm-up steps (compilation,
allocator growth, cuDNN autotuning) are run first and excluded.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from dependency_injector import providers

from neat.data.tokenizers import ByteTokenizer
from neat.interfaces import Batch, IMeasuredModel
from neat.optimization.precision import grad_scaler
from neat.training.device import peak_flops

__all__ = ["BenchResult", "BenchSession", "RandomBatches", "TimedBatches", "run_bench"]


@dataclass(frozen=True)
class BenchResult:
    device: str
    precision: str
    compile: bool
    batch_size: int
    seq_len: int
    params: int
    steps: int
    warmup_steps: int
    warmup_s: float
    step_ms: float
    tokens_per_s: float
    flops_per_token: float
    peak_flops: float | None
    mfu: float | None
    peak_memory_gib: float | None
    data_wait_fraction: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RandomBatches:
    """Uniform random tokens already on the device (nanoGPT's bench.py without real data):
    measures the model and optimizer alone. A few distinct batches are cycled."""

    def __init__(
        self, vocab_size: int, batch_size: int, seq_len: int, device: torch.device, count: int = 4
    ) -> None:
        generator = torch.Generator().manual_seed(0)

        def tokens() -> torch.Tensor:
            return torch.randint(vocab_size, (batch_size, seq_len), generator=generator).to(device)

        self.batches = [Batch(input_ids=tokens(), targets=tokens()) for _ in range(count)]
        self.index = 0

    def next_batch(self) -> Batch:
        batch = self.batches[self.index % len(self.batches)]
        self.index += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = int(state.get("index", 0))


class TimedBatches:
    """Counts the host time spent producing batches (the step cannot start without one)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def next_batch(self) -> Batch:
        start = time.perf_counter()
        batch: Batch = self.inner.next_batch()
        self.seconds += time.perf_counter() - start
        return batch

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = self.inner.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BenchSession:
    """The trainer's step, ready to run: a container with the data swapped for random tokens
    when asked (then no evaluator, checkpointer or token cache is built)."""

    def __init__(self, container: Any, *, random_data: bool = False) -> None:
        self.config = config = container.config()
        self.device: torch.device = container.device()
        self.seq_len = int(config.model.block_size)
        self.world_size = int(container.dist().world_size)
        batch_size = int(config.training.batch_size)
        if random_data:
            container.tokenizer.override(providers.Object(ByteTokenizer()))
            container.evaluator.override(providers.Object(None))
            container.checkpointer.override(providers.Object(None))
            vocab = int(config.model.vocab_size or ByteTokenizer().vocab_size)
            rows = batch_size // self.world_size  # each rank's share, as in training
            container.train_batches.override(
                providers.Object(RandomBatches(vocab, rows, self.seq_len, self.device))
            )
        self.batches = TimedBatches(container.train_batches())
        container.train_batches.override(providers.Object(self.batches))
        self.trainer = container.trainer()
        self.model = self.trainer.model
        self.model.train()
        parallel = self.trainer.parallel_model  # DDP's wrapper under torchrun
        self.step_model = (
            torch.compile(parallel, mode=config.training.compile_mode)
            if config.training.compile
            else parallel
        )
        self.scaler = grad_scaler(self.trainer.options.precision, self.device)
        self.step = 0

    def run(self, steps: int) -> tuple[float, torch.Tensor | None]:
        """Seconds for `steps` steps (synchronised at both ends) and the last loss."""
        _synchronize(self.device)
        start = time.perf_counter()
        loss = None
        for _ in range(steps):
            loss, _ = self.trainer._train_step(
                self.step_model, self.trainer.optimizer, self.scaler, self.step
            )
            self.step += 1
        _synchronize(self.device)
        return time.perf_counter() - start, loss


def run_bench(
    container: Any,
    *,
    steps: int = 50,
    warmup: int = 10,
    random_data: bool = False,
    peak: float | None = None,
) -> BenchResult:
    """Time `steps` trainer steps after `warmup` ones."""
    session = BenchSession(container, random_data=random_data)
    device, config, model = session.device, session.config, session.model
    warmup_s, _ = session.run(warmup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    session.batches.seconds = 0.0
    elapsed, loss = session.run(steps)
    if loss is not None and not torch.isfinite(loss):
        raise RuntimeError(f"loss became {float(loss)} during the benchmark")
    tokens_per_s = steps * session.trainer.options.tokens_per_step / elapsed
    flops = (
        float(model.flops_per_token(session.seq_len)) if isinstance(model, IMeasuredModel) else 0.0
    )
    peak = peak if peak is not None else peak_flops(device)
    if peak:
        peak *= session.world_size  # tokens/s counts every rank's tokens: MFU per GPU
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return BenchResult(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        precision=session.trainer.options.precision,
        compile=bool(config.training.compile),
        batch_size=int(config.training.batch_size) * int(config.training.grad_accum_steps),
        seq_len=session.seq_len,
        params=sum(p.numel() for p in model.parameters()),
        steps=steps,
        warmup_steps=warmup,
        warmup_s=warmup_s,
        step_ms=1000 * elapsed / steps,
        tokens_per_s=tokens_per_s,
        flops_per_token=flops,
        peak_flops=peak,
        mfu=flops * tokens_per_s / peak if peak and flops else None,
        peak_memory_gib=memory,
        data_wait_fraction=session.batches.seconds / elapsed if elapsed > 0 else 0.0,
    )
