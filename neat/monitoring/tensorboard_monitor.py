"""`monitoring.monitors: [..., tensorboard]`: TensorBoard event files in the run directory,
so `tensorboard --logdir runs/` shows every run: each train and eval metric as a scalar, the
resolved config and the samples of `evaluation.sample` as text.

The writer is torch's own (`torch.utils.tensorboard`), which needs the `tensorboard` package
(`neat[tensorboard]`). A resumed run purges the events at and after its first step, so steps
replayed from an earlier checkpoint are not drawn twice.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

import yaml

from neat.config import ComponentConfig, register_component
from neat.errors import ConfigError
from neat.interfaces.contexts import MonitorContext
from neat.monitoring.events import (
    EvalCompleted,
    RunFinished,
    RunStarted,
    SampleGenerated,
    TrainMetrics,
)

__all__ = ["TensorBoardMonitor", "TensorBoardMonitorConfig"]


class TensorBoardMonitor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._writer: Any = None

    def on_event(self, event: object) -> None:
        match event:
            case RunStarted():
                self._open(event.start_step)
                text = yaml.safe_dump(event.config, sort_keys=False)
                self._writer.add_text("config", f"```yaml\n{text}```", event.start_step)
            case TrainMetrics() if self._writer is not None:
                values = {
                    "loss": event.loss,
                    "lr": event.lr,
                    "tokens_per_s": event.tokens_per_s,
                    "grad_norm": event.grad_norm,
                    "mfu": event.mfu,
                    **event.extra,
                }
                self._scalars("train", values, event.step)
            case EvalCompleted() if self._writer is not None:
                self._scalars("eval", event.metrics, event.step)
            case SampleGenerated() if self._writer is not None:
                self._writer.add_text("sample", f"```\n{event.text}\n```", event.step)
            case RunFinished() if self._writer is not None:
                self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        purge = start_step + 1 if start_step > 0 else None  # the first step this run logs
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge)

    def _scalars(self, group: str, values: dict[str, Any], step: int) -> None:
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._writer.add_scalar(f"{group}/{name}", value, step)


class TensorBoardMonitorConfig(ComponentConfig):
    """TensorBoard event files in the run directory; needs `neat[tensorboard]`."""

    type: Literal["tensorboard"] = "tensorboard"


def build_tensorboard_monitor(
    cfg: TensorBoardMonitorConfig, ctx: MonitorContext
) -> TensorBoardMonitor:
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "monitoring.monitors: 'tensorboard' writes through the tensorboard package, which "
            "is not installed: pip install 'neat[tensorboard]', or take 'tensorboard' out"
        )
    return TensorBoardMonitor(ctx.run_dir)


register_component("monitor", TensorBoardMonitorConfig, build_tensorboard_monitor)
