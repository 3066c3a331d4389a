"""The training loop. It talks only to interfaces and publishes events; it never prints."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import torch
from torch import nn

from neat.config.base import EarlyStoppingConfig
from neat.errors import TrainingDiverged, TrainingInterrupted
from neat.interfaces import (
    IBatchSource,
    ICheckpointer,
    IEvaluator,
    IMeasuredModel,
    IMonitor,
    IObjective,
    TrainState,
)
from neat.monitoring.bus import EventBus
from neat.monitoring.events import (
    CheckpointSaved,
    EvalCompleted,
    RunFinished,
    RunStarted,
    SampleGenerated,
    StepCompleted,
    TrainMetrics,
)
from neat.optimization.precision import autocast, grad_scaler
from neat.persistence.manifest import STEP_PREFIX
from neat.persistence.rng import capture_rng_state, restore_rng_state
from neat.persistence.tensors import is_sharded
from neat.training.device import peak_flops
from neat.training.distributed import (
    SINGLE,
    DistInfo,
    agree_on_stop,
    barrier,
    mean_across_ranks,
    per_rank_state,
    rank_entries,
    set_grad_sync,
    state_for_this_rank,
)
from neat.training.early_stopping import BestTracker
from neat.training.objectives import NextTokenLoss
from neat.training.run_dir import run_dir_lock
from neat.training.seeding import seed_everything

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Schedule:
    """How long to train and how often to log, evaluate and checkpoint (in optimizer steps)."""

    max_steps: int
    grad_accum_steps: int = 1
    log_interval: int = 10
    eval_interval: int = 250
    checkpoint_interval: int = 500
    save_final: bool = True
    early_stopping: EarlyStoppingConfig | None = None
    keep_best: bool = False


@dataclass(frozen=True)
class StepOptions:
    """How each step runs: numerics, compilation, seed, and the sizes throughput needs."""

    tokens_per_step: int
    seq_len: int
    precision: str = "fp32"
    grad_clip: float = 1.0
    compile: bool = False
    compile_mode: str = "default"
    compile_optimizer: bool = False
    seed: int = 1337


@dataclass(frozen=True)
class RunFiles:
    """Where the run lives and who watches it: the run directory, what writes its files
    (config.yaml, tokenizer.json; returned so checkpoints copy them), the monitors to
    subscribe while it trains, the checkpoint to resume, and the config to announce."""

    run_dir: Path
    write_run_files: Callable[[Path], dict[str, Path]] = lambda run_dir: {}
    make_monitors: Callable[[], Sequence[IMonitor]] = tuple
    resume_from: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Implements ITrainer: restore or seed, then step, log, evaluate and checkpoint to the end.

    Under torchrun every rank runs this same loop. `model` is the user's module (what is
    evaluated and checkpointed), `parallel_model` what the step calls (DDP's wrapper, or the
    model itself when FSDP2 sharded it in place). Rank 0 alone writes files (the container
    gives other ranks no monitors and a checkpointer that does not write). Besides the
    gradient reduction, the ranks meet only where the loop syncs anyway (log, eval and
    checkpoint steps) and in one tiny CPU all-reduce before each step, which makes a stop
    signal that reached any rank stop all of them at the same step.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_at: Callable[[int], float],
        batches: IBatchSource,
        evaluator: IEvaluator,
        checkpointer: ICheckpointer,
        bus: EventBus,
        schedule: Schedule,
        options: StepOptions,
        run: RunFiles,
        device: torch.device,
        dist: DistInfo = SINGLE,
        parallel_model: nn.Module | None = None,
        objective: IObjective | None = None,
        sampler: Callable[[nn.Module], str] | None = None,
    ) -> None:
        self.model = model
        self.objective: IObjective = objective if objective is not None else NextTokenLoss()
        self.parallel_model = parallel_model if parallel_model is not None else model
        self.optimizer = optimizer
        self.lr_at = lr_at
        self.batches = batches
        self.evaluator = evaluator
        self.checkpointer = checkpointer
        self.bus = bus
        self.schedule = schedule
        self.options = options
        self.run = run
        self.device = device
        self.dist = dist
        self.state: TrainState | None = None
        self._signal_received: int | None = None  # on this rank, by the handler
        self._stop_signal: int | None = None  # agreed by all ranks, before each step
        self._last_checkpoint: Path | None = None  # saved in this run, for the divergence message
        self.tracker = BestTracker.from_config(schedule.early_stopping)
        self.sampler = sampler  # evaluation.sample: text after each evaluation
        self._step_fn: Callable[[], object] | None = None  # compile_optimizer's step
        self._step_of: torch.optim.Optimizer | None = None

    # -- setup -------------------------------------------------------------------------------------

    def restore(self) -> TrainState:
        """Load the resume checkpoint, or seed every RNG for a fresh start.

        Separate from `fit` so a caller can surface checkpoint errors before writing anything.
        """
        if self.state is not None:
            return self.state
        if self.run.resume_from is not None:
            state = self.checkpointer.load(self.run.resume_from, self.model, self.optimizer)
            position = state_for_this_rank(state.data_state, self.dist, "data positions")
            self.batches.load_state_dict(position)
            self._restore_rng(state)
            self._last_checkpoint = self.run.resume_from
            self.tracker.load_state_dict(state.tracker)
            self.checkpointer.protected = self.tracker.best_checkpoint
        else:
            state = TrainState()
            seed_everything(
                self.options.seed + self.dist.rank
            )  # rank 0: exactly the one-process seed
        self.state = state
        return state

    def _restore_rng(self, state: TrainState) -> None:
        """Each rank's generators as saved. On another world size there is no matching set:
        fresh per-rank seeds keep dropout independent, and only randomness is not exact."""
        saved = rank_entries(state.rng_state, "RNG states")
        if len(saved) == self.dist.world_size:
            restore_rng_state(saved[self.dist.rank], self._cuda_device)
            return
        log.warning(
            "rng_reseeded",
            saved_world_size=len(saved),
            world_size=self.dist.world_size,
            hint="the data order resumes exactly; dropout and sampling draw fresh numbers",
        )
        seed_everything(self.options.seed + self.dist.rank + 1_000_003 * state.step)

    @property
    def _cuda_device(self) -> torch.device | None:
        # under torchrun each rank saves only its own GPU's generator
        return self.device if self.dist.active and self.device.type == "cuda" else None

    def _device_description(self) -> str:
        if not self.dist.active:
            return str(self.device)
        return f"{self.dist.world_size} x {self.device.type} ({self.dist.mode})"

    # -- the loop ----------------------------------------------------------------------------------

    def fit(self) -> TrainState:
        """Train to the end. The run directory is locked first (rank 0 writes, so only it
        locks): a second process training in it fails before writing anything."""
        with run_dir_lock(self.run.run_dir, writer=self.dist.is_main):
            return self._fit()

    def _fit(self) -> TrainState:
        state = self.restore()
        optimizer = self.optimizer
        extra_files = self.run.write_run_files(self.run.run_dir)
        monitors = list(self.run.make_monitors())
        unsubscribe = [self.bus.subscribe(m.on_event) for m in monitors]
        step_model: nn.Module = self.parallel_model
        if self.options.compile:
            # after wrapping, as PyTorch's DDP notes ask: dynamo then splits the graph at
            # DDP's bucket boundaries so communication overlaps the backward pass
            step_model = torch.compile(  # type: ignore[assignment]
                self.parallel_model, mode=self.options.compile_mode
            )
        scaler = grad_scaler(self.options.precision, self.device)
        sched = self.schedule
        started = time.perf_counter()
        status = "failed"
        self.bus.publish(
            RunStarted(
                run_dir=self.run.run_dir,
                config=self.run.config,
                start_step=state.step,
                max_steps=sched.max_steps,
                num_params=_num_params(self.model),
                device=self._device_description(),
                tokens_per_step=self.options.tokens_per_step,
            )
        )
        window = _ThroughputWindow(state.step, started)
        last_saved = -1
        try:
            with self._signals_stop_training():
                self.parallel_model.train()
                while state.step < sched.max_steps:
                    self._stop_signal = agree_on_stop(self._signal_received, self.dist)
                    if self._stop_signal is not None:
                        break
                    loss, grad_norm = self._train_step(step_model, optimizer, scaler, state.step)
                    state.step += 1
                    state.tokens_seen += self.options.tokens_per_step
                    self.bus.publish(StepCompleted(state.step, state.tokens_seen))
                    is_last = state.step == sched.max_steps
                    if state.step % sched.log_interval == 0 or is_last:
                        self._log(state, loss, grad_norm, window, started)
                    best = stop_early = False
                    if state.step % sched.eval_interval == 0 or is_last:
                        with window.paused():
                            best = self._evaluate(state) and sched.keep_best
                        stop_early = self.tracker.should_stop
                    if (
                        state.step % sched.checkpoint_interval == 0
                        or (is_last and sched.save_final)
                        or best
                        or stop_early
                    ):
                        # never save diverged weights
                        _check_finite(
                            mean_across_ranks(loss, self.dist), state.step, self._last_checkpoint
                        )
                        with window.paused():
                            self._save(state, extra_files)
                        last_saved = state.step
                    if stop_early:
                        best_dir = self.tracker.best_checkpoint
                        kept = f"; the best checkpoint is {best_dir}" if best_dir else ""
                        log.warning(
                            f"early stopping at step {state.step}: {self.tracker.reason()}{kept}",
                            step=state.step,
                            best_step=self.tracker.best_step,
                        )
                        status = "stopped_early"
                        break
            if self._stop_signal is not None:
                path = None
                if last_saved != state.step:
                    path = self._save(state, extra_files)
                status = "interrupted"
                raise TrainingInterrupted(self._stop_signal, str(path) if path else None)
            if status != "stopped_early":
                status = "completed"
            return state
        finally:
            self.bus.publish(
                RunFinished(state.step, status, time.perf_counter() - started, state.best_val_loss)
            )
            for undo in unsubscribe:
                undo()
            for monitor in monitors:
                monitor.close()

    def _train_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
        step: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            value = lr * group.get("lr_scale", 1.0)
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)  # compile_optimizer: the compiled step reads it
            else:
                group["lr"] = value
        accum = self.schedule.grad_accum_steps
        loss_sum: torch.Tensor | None = None
        for micro in range(accum):
            set_grad_sync(self.parallel_model, micro == accum - 1)
            batch = self.batches.next_batch()
            with autocast(self.options.precision, self.device):
                loss = self.objective.loss(model, batch)
            if accum > 1:
                loss = loss / accum
            scaled = scaler.scale(loss) if scaler is not None else loss
            torch.autograd.backward(scaled)
            loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
        assert loss_sum is not None  # accum >= 1
        grad_norm = None
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.options.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.options.grad_clip
            )
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        elif self.options.compile_optimizer:
            self._compiled_step(optimizer)()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_sum, grad_norm

    def _compiled_step(self, optimizer: torch.optim.Optimizer) -> Callable[[], object]:
        """`optimizer.step` under torch.compile (PyTorch's compiled-optimizer recipe), made
        once. Each group's lr becomes a 0-d tensor first: a float lr is a constant to dynamo,
        so every new value of the schedule would recompile the step."""
        if self._step_fn is None or self._step_of is not optimizer:
            for group in optimizer.param_groups:
                device = group["params"][0].device
                group["lr"] = torch.tensor(float(group["lr"]), device=device)
            self._step_fn = torch.compile(optimizer.step)
            self._step_of = optimizer
        return self._step_fn

    # -- at intervals (the only host syncs) --------------------------------------------------------

    def _log(
        self,
        state: TrainState,
        loss: torch.Tensor,
        grad_norm: torch.Tensor | None,
        window: _ThroughputWindow,
        started: float,
    ) -> None:
        loss_value = _check_finite(
            mean_across_ranks(loss, self.dist), state.step, self._last_checkpoint
        )
        tokens_per_s = window.tokens_per_s(state.step, self.options.tokens_per_step)
        device_peak = peak_flops(self.device)
        peak = device_peak * self.dist.world_size if device_peak else None
        mfu = None
        if peak and isinstance(self.model, IMeasuredModel):
            mfu = self.model.flops_per_token(self.options.seq_len) * tokens_per_s / peak
        state.metrics["loss"] = loss_value
        self.bus.publish(
            TrainMetrics(
                step=state.step,
                loss=loss_value,
                lr=self.lr_at(state.step - 1),
                tokens_per_s=tokens_per_s,
                grad_norm=_scalar(grad_norm) if grad_norm is not None else None,
                mfu=mfu,
                elapsed_s=time.perf_counter() - started,
                extra=self.objective.metrics(),
            )
        )

    def _evaluate(self, state: TrainState) -> bool:
        """Evaluate and count the result; True when the tracked metric improved (a best
        checkpoint for `keep_best` is then saved this step, under the name noted here)."""
        metrics = self.evaluator.evaluate(self.model)
        state.metrics.update(metrics)
        val_loss = metrics.get("val_loss")
        if val_loss is not None and (state.best_val_loss is None or val_loss < state.best_val_loss):
            state.best_val_loss = val_loss
        tracked = self.schedule.early_stopping is not None or "val_loss" in metrics
        improved = tracked and self.tracker.update(state.step, metrics)
        if improved and self.schedule.keep_best:
            self.tracker.best_checkpoint = f"{STEP_PREFIX}{state.step}"
        state.tracker = self.tracker.state_dict()
        self.bus.publish(EvalCompleted(state.step, metrics))
        if self.sampler is not None:
            self.bus.publish(SampleGenerated(state.step, self.sampler(self.model)))
        return improved

    def _save(self, state: TrainState, extra_files: dict[str, Path]) -> Path:
        """Every rank gathers its part (data position, RNG, shards); rank 0 writes, and the
        others wait for it so no rank runs ahead of a checkpoint that is not there yet."""
        state.data_state = per_rank_state(self.batches.state_dict(), self.dist)
        state.rng_state = per_rank_state(capture_rng_state(self._cuda_device), self.dist)
        if self.tracker.best_checkpoint == f"{STEP_PREFIX}{state.step}":
            self.checkpointer.protected = self.tracker.best_checkpoint
        path = self.checkpointer.save(state, self.model, self.optimizer, extra_files)
        self._last_checkpoint = path
        barrier(self.dist)
        self.bus.publish(CheckpointSaved(state.step, path))
        return path

    @contextlib.contextmanager
    def _signals_stop_training(self) -> Iterator[None]:
        """Ctrl-C / SIGTERM ask the loop to stop after the current step; a second one kills."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: FrameType | None) -> None:
            if self._signal_received is not None:
                raise KeyboardInterrupt
            self._signal_received = signum

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class _ThroughputWindow:
    """Tokens/s between log points, excluding time spent in evaluation and checkpointing."""

    def __init__(self, step: int, now: float) -> None:
        self.step = step
        self.start = now
        self.paused_s = 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - t0

    def tokens_per_s(self, step: int, tokens_per_step: int) -> float:
        now = time.perf_counter()
        elapsed = max(now - self.start - self.paused_s, 1e-9)
        rate = (step - self.step) * tokens_per_step / elapsed
        self.step, self.start, self.paused_s = step, now, 0.0
        return rate


def _check_finite(loss: torch.Tensor, step: int, last_checkpoint: Path | None) -> float:
    """The loss as a float (a host sync: call only at log and checkpoint points)."""
    value = float(loss)
    if not math.isfinite(value):
        saved = (
            f"the last checkpoint, {last_checkpoint}, is intact"
            if last_checkpoint is not None
            else "no checkpoint was saved yet"
        )
        raise TrainingDiverged(
            f"loss is {value} at step {step}; lower optimization.lr or check the data; {saved}"
        )
    return value


def _scalar(value: torch.Tensor) -> float:
    """A float of a scalar that may be a replicated DTensor (FSDP2's gradient norm)."""
    return float(value.full_tensor() if is_sharded(value) else value)


def _num_params(model: nn.Module) -> int:
    if isinstance(model, IMeasuredModel):
        return model.num_params()
    return sum(p.numel() for p in model.parameters())
