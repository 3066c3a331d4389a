"""Everything that watches a run: the event bus, its events, and the subscribers to it.

The trainer only publishes events; what happens with them (progress bars, log lines,
`metrics.jsonl`) is chosen by `monitoring.monitors`: each name is a `monitor` type of the component
registry (`neat.register_component("monitor", ...)` adds one).
"""

from neat.monitoring.bus import EventBus
from neat.monitoring.console import ConsoleMonitor
from neat.monitoring.events import (
    CheckpointSaved,
    EvalCompleted,
    RunFinished,
    RunStarted,
    SampleGenerated,
    StepCompleted,
    TrainMetrics,
)
from neat.monitoring.logs import add_json_log_file, configure_logging
from neat.monitoring.metrics_file import MetricsFileMonitor, read_metrics
from neat.monitoring.structlog_monitor import StructlogMonitor

__all__ = [
    "CheckpointSaved",
    "ConsoleMonitor",
    "EvalCompleted",
    "EventBus",
    "MetricsFileMonitor",
    "RunFinished",
    "RunStarted",
    "SampleGenerated",
    "StepCompleted",
    "StructlogMonitor",
    "TrainMetrics",
    "add_json_log_file",
    "configure_logging",
    "read_metrics",
]
