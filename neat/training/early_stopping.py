"""The best value of the tracked evaluation metric, and when to stop for want of progress.

One tracker serves `evaluation.early_stopping` and `checkpoint.keep_best`; its state goes
into every checkpoint, so a resumed run counts patience from where it stopped and keeps the
same best checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from neat.config.base import EarlyStoppingConfig
from neat.errors import ConfigError

__all__ = ["BestTracker"]


@dataclass
class BestTracker:
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    min_delta: float = 0.0
    patience: int | None = None  # None: track the best, never stop
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    best_checkpoint: str | None = None

    @classmethod
    def from_config(cls, cfg: EarlyStoppingConfig | None) -> BestTracker:
        if cfg is None:
            return cls()
        return cls(cfg.metric, cfg.mode, cfg.min_delta, cfg.patience)

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Count this evaluation; True when it improved on the best."""
        if self.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise ConfigError(
                f"evaluation.early_stopping.metric is {self.metric!r}, which the evaluator "
                f"does not report (it reports {known}): name one of those"
            )
        value = float(metrics[self.metric])
        if self.best is None:
            improved = True
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.best_step, self.bad_evals = value, step, 0
        else:
            self.bad_evals += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_evals >= self.patience

    def reason(self) -> str:
        return (
            f"{self.metric} has not improved by more than {self.min_delta:g} for "
            f"{self.bad_evals} evaluations (best {self.best:.6g} at step {self.best_step})"
        )

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the counters, not the settings (the config has those)."""
        state = asdict(self)
        return {k: state[k] for k in ("best", "best_step", "bad_evals", "best_checkpoint")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_step = state.get("best_step")
        self.bad_evals = int(state.get("bad_evals", 0))
        self.best_checkpoint = state.get("best_checkpoint")
