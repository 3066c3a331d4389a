"""neat's trainer against a hand-written PyTorch loop: same model, batch, optimizer, process.

Run: python -m pytest benchmarks/test_trainer_overhead.py --benchmark-only -s
The ratio (plain loop time / neat time, so 1.0 means no overhead) lands in extra_info and
is printed; the target is >= 0.97 (at most 3% overhead) on CPU.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neat.config import load_config
from neat.di import build_container
from neat.models import GPT
from neat.monitoring import RunStarted, StepCompleted
from neat.optimization import param_groups

REPO = Path(__file__).resolve().parents[1]
STEPS = 60
ROUNDS = 5


def neat_config(steps: int) -> Any:
    return load_config(
        REPO / "examples" / "shakespeare_char_cpu.yaml",
        [
            f"training.max_steps={steps}",
            "evaluation.interval=1000000",
            "checkpoint.interval=1000000",
            "checkpoint.save_final=false",
            "monitoring.log_interval=50",
            "monitoring.monitors=[console, structlog, metrics]",
            "monitoring.progress=plain",
        ],
    )


def time_neat(tmp_path: Path, round_index: int) -> float:
    """Seconds from the first step's start to the last step's end, as the bus reports them.

    Setup (data, model, run directory) and the end-of-run evaluation and checkpoint are
    one-off costs outside the loop; the plain loop has neither.
    """
    container = build_container(neat_config(STEPS), run_dir=tmp_path / f"neat-{round_index}")
    marks: dict[str, float] = {}
    bus = container.event_bus()
    bus.subscribe(lambda _: marks.setdefault("start", time.perf_counter()), RunStarted)
    bus.subscribe(
        lambda event: marks.update(end=time.perf_counter()) if event.step == STEPS else None,  # type: ignore[attr-defined]
        StepCompleted,
    )
    container.trainer().fit()
    return marks["end"] - marks["start"]


def time_plain_loop(train: np.ndarray, cfg: Any, vocab_size: int) -> float:
    """What a user would write by hand: nanoGPT's get_batch and loop."""
    torch.manual_seed(cfg.training.seed)
    model = GPT(cfg.model, vocab_size)
    opt_cfg = cfg.optimization
    optimizer = torch.optim.AdamW(
        param_groups(model, opt_cfg.weight_decay),
        lr=opt_cfg.lr,
        betas=(opt_cfg.beta1, opt_cfg.beta2),
    )
    batch, block = cfg.training.batch_size, cfg.model.block_size

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(train) - block, (batch,))
        x = torch.stack([torch.from_numpy(train[i : i + block].astype(np.int64)) for i in ix])
        y = torch.stack(
            [torch.from_numpy(train[i + 1 : i + 1 + block].astype(np.int64)) for i in ix]
        )
        return x, y

    def lr_at(step: int) -> float:
        if step < opt_cfg.warmup_steps:
            return float(opt_cfg.lr * (step + 1) / opt_cfg.warmup_steps)
        progress = (step - opt_cfg.warmup_steps) / (cfg.training.max_steps - opt_cfg.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return float(opt_cfg.min_lr + cosine * (opt_cfg.lr - opt_cfg.min_lr))

    model.train()
    start = time.perf_counter()
    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        x, y = get_batch()
        loss = model(x, y)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % 50 == 0:
            print(f"step {step + 1} loss {loss.item():.4f}")  # the same log cadence as neat
    return time.perf_counter() - start


@pytest.mark.benchmark(group="trainer-overhead")
def test_trainer_overhead_vs_plain_loop(benchmark: Any, tmp_path: Path) -> None:
    config = neat_config(STEPS)
    container = build_container(config, run_dir=tmp_path / "setup")
    train = np.asarray(container.token_data().train)
    vocab_size = container.tokenizer().vocab_size
    neat_times: list[float] = []
    plain_times: list[float] = []
    round_index = iter(range(1000))

    def interleaved_pair() -> None:
        i = next(round_index)
        plain_times.append(time_plain_loop(train, config, vocab_size))
        neat_times.append(time_neat(tmp_path, i))

    time_plain_loop(train, config, vocab_size)  # warm-up: allocator, kernels, caches
    benchmark.pedantic(interleaved_pair, rounds=ROUNDS, iterations=1)
    tokens = STEPS * config.training.batch_size * config.model.block_size
    neat_median, plain_median = statistics.median(neat_times), statistics.median(plain_times)
    ratio = plain_median / neat_median
    benchmark.extra_info.update(
        {
            "neat_tokens_per_s": tokens / neat_median,
            "plain_tokens_per_s": tokens / plain_median,
            "throughput_ratio_neat_over_plain": ratio,
            "neat_times_s": neat_times,
            "plain_times_s": plain_times,
        }
    )
    print(
        f"\nneat {tokens / neat_median:,.0f} tok/s, plain loop {tokens / plain_median:,.0f} tok/s, "
        f"ratio {ratio:.3f} (median of {ROUNDS} interleaved rounds of {STEPS} steps)"
    )
    assert ratio >= 0.97, f"neat's trainer is {100 * (1 - ratio):.1f}% slower than a plain loop"
