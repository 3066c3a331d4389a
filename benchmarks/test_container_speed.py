"""What neat's dependency injection costs, next to building the same objects by hand.

Three figures, all in one run, on the tiny config the tests use (2-layer GPT, char tokenizer,
60 kB of Shakespeare, a warm token cache):

(a) `load_config` + `build_container`: milliseconds per build (no hand-written equivalent;
    the `build_container` part is in (b) too).
(b) `build_container` + `container.trainer()`, which resolves what a training run resolves
    (config -> data source -> tokenizer -> token data -> model -> optimizer -> sampler,
    evaluator, checkpointer -> trainer), against the same neat functions and classes called
    directly (the baseline). Both do the same work (the token cache lookup, the char vocab
    cache, the seeded model init), so the difference is the wiring. Ratio = container time /
    direct time (1.0: free); the absolute difference is in milliseconds, and the container
    time is also split into `build_container` (which copies the provider graph) and
    `trainer()` (the resolution itself).
(c) a provider call on a built singleton (`container.model()` the second time) against a plain
    attribute read of the same object (`trainer.model`), in ns per call.

Rounds interleave neat and the baseline; medians are compared. Sanity is asserted (both paths
build the same model weights and the same first batch), timings are not.

    python -m pytest benchmarks/test_container_speed.py --benchmark-only -s
"""

from __future__ import annotations

import logging
import statistics
import time
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
from rich.console import Console

from neat.config import build, load_config
from neat.config.schema import ExperimentConfig
from neat.data import (
    BatchSampler,
    TextFileSource,
    build_tokenizer,
    default_cache_dir,
    eval_batches,
    prepare_token_data,
)
from neat.data.sources import TextSourceConfig
from neat.di import build_container
from neat.evaluation import LossEvaluator
from neat.evaluation.evaluator import LossEvaluatorConfig
from neat.interfaces import IMonitor
from neat.interfaces.contexts import MonitorContext
from neat.models import GPT
from neat.models.gpt import GPTConfig
from neat.monitoring import EventBus
from neat.optimization import AdamWFactory, resolve_precision
from neat.optimization.adamw import AdamWConfig
from neat.persistence import Checkpointer
from neat.persistence.manifest import CHECKPOINTS_DIR
from neat.training.device import resolve_device
from neat.training.run_dir import write_run_files
from neat.training.trainer import RunFiles, Schedule, StepOptions, Trainer

SHAKESPEARE = Path(__file__).resolve().parents[1] / "examples" / "data" / "tinyshakespeare.txt"
# tests/conftest.py's TINY_CONFIG (benchmarks do not import the tests).
TINY_CONFIG = """\
name: tiny
model: {type: gpt, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.1}
data: {type: text, path: corpus.txt, tokenizer: {type: char}, val_fraction: 0.1}
optimization: {lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 5, decay_steps: 100}
training: {max_steps: 30, batch_size: 4, seed: 7, device: cpu}
evaluation: {interval: 10, batches: 2}
monitoring: {log_interval: 1}
checkpoint: {interval: 10, keep_last: 2}
"""
BUILD_ROUNDS, BUILDS_PER_ROUND = 10, 50
RESOLVE_ROUNDS = 30
CALL_ROUNDS, CALLS_PER_ROUND = 7, 500_000


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    (tmp_path / "corpus.txt").write_text(
        SHAKESPEARE.read_text(encoding="utf-8")[:60_000], encoding="utf-8"
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    """Both paths log a token_cache.hit per build; printing hundreds of them would be timed too
    and bury the figures."""
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.configure(**previous)


def build_by_hand(config: ExperimentConfig, run_dir: Path) -> Trainer:
    """The objects `container.trainer()` resolves, from the same functions, called directly."""
    training, model_cfg, opt = config.training, config.model, config.optimization
    source_cfg, evaluation = config.data.sources[0], config.evaluation
    assert isinstance(model_cfg, GPTConfig) and isinstance(opt, AdamWConfig)
    assert isinstance(source_cfg, TextSourceConfig)
    assert isinstance(evaluation, LossEvaluatorConfig)
    block_size = model_cfg.block_size
    cache_dir = default_cache_dir()
    device = resolve_device(training.device)
    precision = resolve_precision(training.precision, device)
    source = TextFileSource(
        [source_cfg.path] if isinstance(source_cfg.path, str) else list(source_cfg.path)
    )
    tokenizer = build_tokenizer(config.data.tokenizer, source, cache_dir)
    token_data = prepare_token_data(source, tokenizer, cache_dir, config.data.val_fraction)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(training.seed)
        model = GPT(model_cfg, tokenizer.vocab_size)
    model.to(device)
    factory = AdamWFactory(opt, training.max_steps)
    sampler = BatchSampler(
        token_data.weighted_train(),
        batch_size=training.batch_size,
        block_size=block_size,
        seed=training.seed,
        device=device,
        name="train",
    )
    evaluator = LossEvaluator(
        eval_batches(
            token_data.val_splits(),
            evaluation.batch_size or training.batch_size,
            block_size,
            evaluation.batches,
        ),
        tokenizer.token_bytes(),
        device,
        precision,
    )

    def make_monitors() -> list[IMonitor]:
        ctx = MonitorContext(run_dir, Console(stderr=True), config.monitoring.progress)
        return [build("monitor", cfg, ctx) for cfg in config.monitoring.monitors]

    return Trainer(
        model=model,
        optimizer=factory.create(model, device),
        lr_at=factory.lr_at,
        batches=sampler,
        evaluator=evaluator,
        checkpointer=Checkpointer(
            run_dir / CHECKPOINTS_DIR,
            keep_last=config.checkpoint.keep_last,
            metadata=config.model_dump(mode="json"),
        ),
        bus=EventBus(),
        schedule=Schedule(
            max_steps=training.max_steps,
            grad_accum_steps=training.grad_accum_steps,
            log_interval=config.monitoring.log_interval,
            eval_interval=evaluation.interval,
            checkpoint_interval=config.checkpoint.interval,
            save_final=config.checkpoint.save_final,
        ),
        options=StepOptions(
            tokens_per_step=training.batch_size * training.grad_accum_steps * block_size,
            seq_len=block_size,
            precision=precision,
            grad_clip=float(opt.grad_clip),
            compile=training.compile,
            seed=training.seed,
        ),
        run=RunFiles(
            run_dir=run_dir,
            write_run_files=lambda path: write_run_files(path, config, tokenizer),
            make_monitors=make_monitors,
            config=config.model_dump(mode="json"),
        ),
        device=device,
    )


def _ms(seconds: list[float], per: int = 1) -> float:
    return 1e3 * statistics.median(seconds) / per


@pytest.mark.benchmark(group="container-speed")
def test_load_config_and_build_container(benchmark: Any, tiny_config: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    load_times: list[float] = []
    build_times: list[float] = []

    def one_round() -> None:
        start = time.perf_counter()
        configs = [load_config(tiny_config) for _ in range(BUILDS_PER_ROUND)]
        middle = time.perf_counter()
        for config in configs:
            build_container(config, run_dir=run_dir)
        load_times.append(middle - start)
        build_times.append(time.perf_counter() - middle)

    one_round()  # warm-up
    load_times.clear()
    build_times.clear()
    benchmark.pedantic(one_round, rounds=BUILD_ROUNDS, iterations=1)
    load_ms, build_ms = _ms(load_times, BUILDS_PER_ROUND), _ms(build_times, BUILDS_PER_ROUND)
    benchmark.extra_info.update(
        {"load_config_ms": load_ms, "build_container_ms": build_ms, "total_ms": load_ms + build_ms}
    )
    print(
        f"\nload_config {load_ms:.3f} ms + build_container {build_ms:.3f} ms = "
        f"{load_ms + build_ms:.3f} ms per build (median of {BUILD_ROUNDS} rounds of "
        f"{BUILDS_PER_ROUND})"
    )


@pytest.mark.benchmark(group="container-speed")
def test_resolve_trainer_vs_by_hand(benchmark: Any, tiny_config: Path, tmp_path: Path) -> None:
    config = load_config(tiny_config)
    run_dir = tmp_path / "run"

    # Warm-up and sanity: the first resolve fills the token cache; both paths build the same.
    neat_trainer = build_container(config, run_dir=run_dir).trainer()
    hand_trainer = build_by_hand(config, run_dir)
    neat_weights, hand_weights = neat_trainer.model.state_dict(), hand_trainer.model.state_dict()
    assert neat_weights.keys() == hand_weights.keys()
    assert all(torch.equal(neat_weights[k], hand_weights[k]) for k in neat_weights)
    neat_batch, hand_batch = (t.batches.next_batch() for t in (neat_trainer, hand_trainer))
    assert torch.equal(neat_batch.input_ids, hand_batch.input_ids)
    assert torch.equal(neat_batch.targets, hand_batch.targets)

    times: dict[str, list[float]] = {"by hand": [], "build_container": [], "trainer()": []}

    def interleaved_pair() -> None:
        start = time.perf_counter()
        build_by_hand(config, run_dir)
        built = time.perf_counter()
        container = build_container(config, run_dir=run_dir)
        wired = time.perf_counter()
        container.trainer()
        end = time.perf_counter()
        times["by hand"].append(built - start)
        times["build_container"].append(wired - built)
        times["trainer()"].append(end - wired)

    benchmark.pedantic(interleaved_pair, rounds=RESOLVE_ROUNDS, iterations=1)
    neat_times = [a + b for a, b in zip(times["build_container"], times["trainer()"], strict=True)]
    neat_ms, hand_ms = _ms(neat_times), _ms(times["by hand"])
    build_ms, resolve_ms = _ms(times["build_container"]), _ms(times["trainer()"])
    ratio = neat_ms / hand_ms
    benchmark.extra_info.update(
        {
            "container_ms": neat_ms,
            "build_container_ms": build_ms,
            "trainer_resolve_ms": resolve_ms,
            "by_hand_ms": hand_ms,
            "overhead_ms": neat_ms - hand_ms,
            "time_ratio_container_over_hand": ratio,
            "resolve_ratio_trainer_over_hand": resolve_ms / hand_ms,
            "times_s": times,
        }
    )
    print(
        f"\nbuild_container {build_ms:.2f} ms + trainer() {resolve_ms:.2f} ms: {neat_ms:.2f} ms, "
        f"by hand {hand_ms:.2f} ms: ratio {ratio:.3f}, overhead {neat_ms - hand_ms:+.2f} ms "
        f"(trainer() alone: ratio {resolve_ms / hand_ms:.3f}; median of {RESOLVE_ROUNDS} "
        "interleaved rounds)"
    )


@pytest.mark.benchmark(group="container-speed")
def test_singleton_call_vs_attribute(benchmark: Any, tiny_config: Path, tmp_path: Path) -> None:
    container = build_container(load_config(tiny_config), run_dir=tmp_path / "run")
    trainer = container.trainer()
    assert container.model() is trainer.model  # the singleton, built once
    names = {"container": container, "trainer": trainer}
    provider = timeit.Timer("container.model()", globals=names)
    attribute = timeit.Timer("trainer.model", globals=names)
    empty = timeit.Timer("pass")
    times: dict[str, list[float]] = {"provider": [], "attribute": [], "loop": []}

    def interleaved_round() -> None:
        times["provider"].append(provider.timeit(CALLS_PER_ROUND))
        times["attribute"].append(attribute.timeit(CALLS_PER_ROUND))
        times["loop"].append(empty.timeit(CALLS_PER_ROUND))

    benchmark.pedantic(interleaved_round, rounds=CALL_ROUNDS, iterations=1)
    ns = {k: 1e9 * statistics.median(v) / CALLS_PER_ROUND for k, v in times.items()}
    ratio = ns["provider"] / ns["attribute"]
    benchmark.extra_info.update(
        {
            "provider_call_ns": ns["provider"],
            "attribute_ns": ns["attribute"],
            "timeit_loop_ns": ns["loop"],
            "ratio_provider_over_attribute": ratio,
        }
    )
    print(
        f"\ncontainer.model() {ns['provider']:.1f} ns, trainer.model {ns['attribute']:.1f} ns "
        f"per call: ratio {ratio:.1f} (timeit loop itself {ns['loop']:.1f} ns; median of "
        f"{CALL_ROUNDS} interleaved rounds of {CALLS_PER_ROUND:,})"
    )
