"""`neat lr-find`: the learning-rate range test (Smith 2017, "Cyclical Learning Rates for
Training Neural Networks", section 3.3).

The trainer's own step (autocast, clipping, the configured optimizer) runs with the learning
rate raised exponentially from `start` to `end`, one batch per rate, until the loss
diverges (its exponential moving average above `DIVERGED` times its best). The curve is then
smoothed by a centred moving average (no lag, unlike the running average), and the
suggestion is the rate where it falls fastest against log(lr), before its minimum (the
"steepest" rule of fastai's finder); a tenth of the rate at the minimum is given as well.
The model, the optimizer and the RNG are restored afterwards, so nothing of the run changes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from neat.errors import ConfigError
from neat.optimization.precision import grad_scaler
from neat.training.objectives import NextTokenLoss

__all__ = ["LRFindResult", "centred_average", "lr_find", "plot", "suggest"]

SMOOTHING = 0.9  # the running average's weight of the past (the divergence test)
DIVERGED = 4.0  # stop once the running average exceeds this multiple of its best


@dataclass(frozen=True)
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed (centred)
    raw_losses: list[float]
    suggestion: float | None
    min_loss_lr: float | None
    diverged_at: float | None  # the rate at which it stopped, when it diverged
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest(lrs: list[float], losses: list[float], skip: int = 5) -> float | None:
    """The rate of the steepest descent of the smoothed loss over log(lr), before its minimum;
    None when fewer than three points come before it."""
    end = int(np.argmin(losses)) + 1
    if end - skip < 3:
        skip = 0
    if end - skip < 3:
        return None
    xs = np.log(np.asarray(lrs[skip:end]))
    ys = np.asarray(losses[skip:end])
    return float(lrs[skip + int(np.argmin(np.gradient(ys, xs)))])


def centred_average(values: list[float], window: int) -> list[float]:
    """Each value averaged with its neighbours, `window // 2` on each side (fewer at the
    ends)."""
    half = window // 2
    data = np.asarray(values, dtype=float)
    return [float(data[max(0, i - half) : i + half + 1].mean()) for i in range(len(data))]


def lr_find(
    container: Any, *, start: float = 1e-7, end: float = 1.0, steps: int = 100
) -> LRFindResult:
    """Run the range test on the container's trainer; everything it touched is restored."""
    if not 0 < start < end:
        raise ConfigError(f"--start {start} must be positive and below --end {end}")
    if steps < 5:
        raise ConfigError(f"--steps {steps}: the range test needs at least 5 steps")
    trainer = container.trainer()
    if not isinstance(trainer.objective, NextTokenLoss):
        raise ConfigError(
            f"neat lr-find tests the next-token loss; this config trains with "
            f"{type(trainer.objective).__name__}: find the rate on the SFT config instead"
        )
    model, optimizer, device = trainer.model, trainer.optimizer, trainer.device
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.random.get_rng_state()
    scaler = grad_scaler(trainer.options.precision, device)
    ratio = end / start
    lrs: list[float] = []
    raw: list[float] = []
    average, best, diverged_at = 0.0, math.inf, None
    schedule = trainer.lr_at
    trainer.lr_at = lambda step: start * ratio ** (step / (steps - 1))
    model.train()
    try:
        for step in range(steps):
            loss, _ = trainer._train_step(trainer.parallel_model, optimizer, scaler, step)
            value = float(loss)
            lr = start * ratio ** (step / (steps - 1))
            if not math.isfinite(value):
                diverged_at = lr
                break
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            debiased = average / (1 - SMOOTHING ** (step + 1))
            lrs.append(lr)
            raw.append(value)
            best = min(best, debiased)
            if debiased > DIVERGED * best:
                diverged_at = lr
                break
    finally:
        trainer.lr_at = schedule
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        torch.random.set_rng_state(saved_rng)
    smoothed = centred_average(raw, window=max(3, steps // 20))
    notes = []
    if diverged_at is None:
        notes.append(f"the loss did not diverge up to {end:g}: try a larger --end")
    suggestion = suggest(lrs, smoothed) if smoothed else None
    min_lr = lrs[int(np.argmin(smoothed))] / 10 if smoothed else None
    return LRFindResult(lrs, smoothed, raw, suggestion, min_lr, diverged_at, notes)


def plot(result: LRFindResult, out: Any, configured: float | None = None) -> None:
    """The smoothed and raw loss against the rate (log axis), the suggestion marked."""
    from neat.evaluation.report.plots import matplotlib_parts

    figure, canvas = matplotlib_parts()
    fig = figure(figsize=(6.0, 3.5))
    canvas(fig)
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.raw_losses, lw=0.8, alpha=0.4, label="loss")
    ax.plot(result.lrs, result.losses, lw=1.5, label="smoothed")
    if result.suggestion is not None:
        ax.axvline(
            result.suggestion, color="C3", ls="--", label=f"suggested {result.suggestion:.2g}"
        )
    if configured is not None:
        ax.axvline(configured, color="C2", ls=":", label=f"configured {configured:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=100)
