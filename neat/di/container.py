"""The wiring diagram: which component feeds which. The one place that names concrete classes
is `builders.py`; this file only says how they connect.

Override any provider to swap a part, e.g. a model of your own:

    container = build_container(config)
    with container.model.override(providers.Object(MyModel())):
        container.trainer().fit()
"""

from __future__ import annotations

from pathlib import Path

from dependency_injector import containers, providers
from rich.console import Console

from neat.config.schema import ExperimentConfig
from neat.di import builders, registry
from neat.monitoring import EventBus
from neat.monitoring.registry import check_monitor_names
from neat.optimization.precision import resolve_precision
from neat.training.distributed import broadcast_object, torchrun_env
from neat.training.run_dir import new_run_dir
from neat.training.trainer import Schedule, Trainer


class ServiceContainer(containers.DeclarativeContainer):
    config = providers.Dependency(instance_of=ExperimentConfig)
    run_dir = providers.Dependency(instance_of=Path)
    resume_from: providers.Provider[Path | None] = providers.Object(None)
    console = providers.Singleton(Console, stderr=True)

    dist = providers.Singleton(builders.make_dist, config)
    device = providers.Singleton(builders.make_device, dist)
    precision = providers.Singleton(resolve_precision, config.provided.training.precision, device)

    data_source = providers.Singleton(builders.make_data_source, config)
    tokenizer = providers.Singleton(builders.make_tokenizer, config, data_source, dist)
    token_data = providers.Singleton(builders.make_token_data, config, data_source, tokenizer, dist)
    train_batches = providers.Singleton(
        builders.make_train_batches, config, token_data, device, data_source, tokenizer, dist
    )

    model = providers.Singleton(builders.make_model, config, tokenizer)
    parallel_model = providers.Singleton(builders.make_parallel_model, config, model, dist, device)
    optimizer_factory = providers.Singleton(
        registry.build, "optimization", config.provided.optimization, config.provided.training
    )
    optimizer = providers.Singleton(
        builders.make_optimizer, optimizer_factory, parallel_model, device
    )
    evaluator = providers.Singleton(
        builders.make_evaluator, config, token_data, device, precision, dist
    )
    checkpointer = providers.Singleton(builders.make_checkpointer, config, run_dir, dist)

    event_bus = providers.Singleton(EventBus)
    monitors = providers.Factory(
        builders.make_monitors, config, run_dir, console, data_source, dist
    )

    schedule = providers.Singleton(
        Schedule,
        max_steps=config.provided.training.max_steps,
        grad_accum_steps=config.provided.training.grad_accum_steps,
        log_interval=config.provided.monitoring.log_interval,
        eval_interval=config.provided.evaluation.interval,
        checkpoint_interval=config.provided.checkpoint.interval,
        save_final=config.provided.checkpoint.save_final,
    )
    trainer = providers.Singleton(
        Trainer,
        model=model,
        optimizer=optimizer,
        optimizer_factory=optimizer_factory,
        train_batches=train_batches,
        evaluator=evaluator,
        checkpointer=checkpointer,
        bus=event_bus,
        schedule=schedule,
        device=device,
        precision=precision,
        seed=config.provided.training.seed,
        tokens_per_step=providers.Callable(builders.tokens_per_step, config),
        seq_len=providers.Callable(builders.block_size_of, config),
        run_dir=run_dir,
        prepare_run_dir=providers.Callable(builders.run_dir_writer, config, tokenizer, dist),
        make_monitors=monitors.provider,
        resume_from=resume_from,
        compile_model=config.provided.training.compile,
        compile_mode=config.provided.training.compile_mode,
        grad_clip=providers.Callable(builders.grad_clip_of, config),
        config_dict=providers.Callable(builders.config_dict, config),
        parallel_model=parallel_model,
        dist=dist,
    )


def build_container(
    config: ExperimentConfig,
    *,
    run_dir: Path | None = None,
    resume_from: Path | None = None,
    console: Console | None = None,
) -> ServiceContainer:
    """The composition root for library users and the CLI alike."""
    check_monitor_names(config.monitoring.monitors)
    container = ServiceContainer(
        config=config, run_dir=Path(run_dir) if run_dir else new_run_dir(config.name)
    )
    if resume_from is not None:
        container.resume_from.override(providers.Object(Path(resume_from)))
    if console is not None:
        container.console.override(providers.Object(console))
    container.check_dependencies()
    if torchrun_env() is not None:
        _agree_on_run(container)
    return container


def _agree_on_run(container: ServiceContainer) -> None:
    """Under torchrun every rank resolved its own run directory and resume point (a new
    run's name has a timestamp); all take rank 0's, so they write and read one run."""
    info = container.dist()
    if not info.active:
        return
    run_dir, resume_from = broadcast_object((container.run_dir(), container.resume_from()), info)
    container.run_dir.override(providers.Object(run_dir))
    container.resume_from.override(providers.Object(resume_from))
